//! `ciba-charts CHARTS_JSON DIR`: the benchmark report's figures as SVG files in DIR, drawn
//! from the numbers `bench/render.py` wrote (the same ones its tables show):
//!
//! - `chart-cpu.svg`: server CPU per flow, ours against node-oidc-provider, and p50 per endpoint;
//! - `chart-latency.svg`: p50 and p99 per endpoint with the in-region latencies injected;
//! - `chart-cost.svg`: cost per million authentications by AWS service, both signer modes.
//!
//! A chart whose numbers are missing (that part of the report was skipped) is not drawn.

use std::process::ExitCode;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::Value;

/// One horizontal bar chart: rows of labelled stacks, each stack a list of (series, value);
/// bars of the same series share a colour and a legend entry.
struct Bars {
    title: String,
    unit: String,
    rows: Vec<(String, Vec<(String, f64)>)>,
    /// Whether a row's values stack (cost by service) or are drawn as thin bars side by side.
    stacked: bool,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn series_names(bars: &Bars) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, values) in &bars.rows {
        for (name, _) in values {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

fn draw(bars: &Bars, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let names = series_names(bars);
    let rows = bars.rows.len() as i32;
    let longest = bars
        .rows
        .iter()
        .map(|(_, values)| {
            if bars.stacked {
                values.iter().map(|(_, v)| v).sum()
            } else {
                values.iter().map(|(_, v)| *v).fold(0.0, f64::max)
            }
        })
        .fold(0.0, f64::max);
    let height = 120 + 34 * rows.max(1) as u32 + 22 * names.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&bars.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(330)
        // Room on the right for the legend.
        .build_cartesian_2d(0.0..(longest * 1.6).max(1e-9), (0..rows).into_segmented())?;
    let labels: Vec<String> = bars.rows.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.rows.len())
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(rows - 1 - *i)
                .ok()
                .and_then(|i| labels.get(i).cloned())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .x_desc(bars.unit.as_str())
        .label_style(("sans-serif", 13))
        .draw()?;
    let slots = if bars.stacked { 1 } else { names.len() as u32 };
    let slot = 28 / slots.max(1);
    for (n, name) in names.iter().enumerate() {
        let color = PALETTE[n % PALETTE.len()];
        let mut rects = Vec::new();
        for (row, (_, values)) in bars.rows.iter().enumerate() {
            let mut start = 0.0;
            for (series, value) in values {
                if series == name {
                    let (top, bottom) = if bars.stacked {
                        (4, 4)
                    } else {
                        let index = n as u32;
                        (3 + index * slot, 31 - (index + 1) * slot)
                    };
                    // The first row on top.
                    let row = rows - 1 - row as i32;
                    let mut rect = Rectangle::new(
                        [
                            (start, SegmentValue::Exact(row)),
                            (start + value, SegmentValue::Exact(row + 1)),
                        ],
                        color.filled(),
                    );
                    rect.set_margin(top, bottom, 0, 0);
                    rects.push(rect);
                }
                if bars.stacked {
                    start += value;
                }
            }
        }
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn cpu(charts: &Value) -> Option<Bars> {
    let flows = charts["cpu"]["flows"]
        .as_array()
        .filter(|a| !a.is_empty())?;
    let mut rows: Vec<(String, Vec<(String, f64)>)> = flows
        .iter()
        .map(|f| {
            (
                format!("CPU per flow: {}", f["shape"].as_str().unwrap_or("")),
                vec![
                    ("ours".into(), number(&f["ours_us"])),
                    ("node-oidc-provider".into(), number(&f["node_us"])),
                ],
            )
        })
        .collect();
    for e in charts["cpu"]["endpoints"].as_array().into_iter().flatten() {
        rows.push((
            format!("p50 latency: {}", e["endpoint"].as_str().unwrap_or("")),
            vec![
                ("ours".into(), number(&e["ours_p50_us"])),
                ("node-oidc-provider".into(), number(&e["node_p50_us"])),
            ],
        ));
    }
    Some(Bars {
        title: "Server CPU per flow, and p50 per endpoint (8 workers, in-memory store)".into(),
        unit: "µs".into(),
        rows,
        stacked: false,
    })
}

fn latency(charts: &Value) -> Option<Bars> {
    let rows = charts["latency"].as_array().filter(|a| !a.is_empty())?;
    Some(Bars {
        title: "Per endpoint with in-region latency injected (DynamoDB 4 ms, SNS 20 ms, KMS 10 ms)"
            .into(),
        unit: "ms".into(),
        rows: rows
            .iter()
            .map(|r| {
                (
                    format!(
                        "{} {}: {}",
                        r["signer"].as_str().unwrap_or(""),
                        r["flow"].as_str().unwrap_or(""),
                        r["endpoint"].as_str().unwrap_or("")
                    ),
                    vec![
                        ("injected on path".into(), number(&r["injected_ms"])),
                        ("p50".into(), number(&r["p50_ms"])),
                        ("p99".into(), number(&r["p99_ms"])),
                    ],
                )
            })
            .collect(),
        stacked: false,
    })
}

fn cost(charts: &Value) -> Option<Bars> {
    let rows = charts["cost"].as_array().filter(|a| !a.is_empty())?;
    Some(Bars {
        title: "Cost per million authentications by AWS service (us-east-1 list prices)".into(),
        unit: "USD per million".into(),
        rows: rows
            .iter()
            .map(|r| {
                let services = r["usd_per_million"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                (
                    format!(
                        "{} ({})",
                        r["flow"].as_str().unwrap_or(""),
                        r["signer"].as_str().unwrap_or("")
                    ),
                    services
                        .iter()
                        .map(|(service, usd)| (service.clone(), number(usd)))
                        .collect(),
                )
            })
            .collect(),
        stacked: true,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, dir] = args.as_slice() else {
        eprintln!("usage: ciba-charts CHARTS_JSON DIR");
        return ExitCode::from(2);
    };
    let charts: Value = match std::fs::read_to_string(input)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ciba-charts: {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let figures = [
        ("chart-cpu.svg", cpu(&charts)),
        ("chart-latency.svg", latency(&charts)),
        ("chart-cost.svg", cost(&charts)),
    ];
    for (file, bars) in figures {
        let path = format!("{dir}/{file}");
        match bars {
            Some(bars) => {
                if let Err(e) = draw(&bars, &path) {
                    eprintln!("ciba-charts: {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            None => {
                // A stale figure would contradict the report's tables.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    ExitCode::SUCCESS
}
