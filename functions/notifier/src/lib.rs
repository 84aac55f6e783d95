//! The table's stream consumer: every auth request that turns approved, denied or expired is
//! handed to the `Notifier`, which calls ping and push clients (CIBA Core §10.2, §10.3, §12).
//!
//! Records are processed in order. The first one whose delivery fails (after the notifier's own
//! retries with back-off) is reported as a batch item failure: Lambda retries from it, and once
//! the event source mapping's retries are spent the record goes to its on-failure destination,
//! the dead-letter queue an operator inspects. Delivered requests are marked, so a retried batch
//! never notifies anyone twice.

use ciba_shared::notify::{Notifier, Outcome};
use serde_json::{Value, json};

/// A request whose status changed to one its client must hear of, and the stream position.
#[derive(Debug, PartialEq)]
pub struct Change {
    pub auth_req_id: String,
    pub sequence_number: String,
}

fn string<'a>(image: &'a Value, attribute: &str) -> Option<&'a str> {
    image.get(attribute)?.get("S")?.as_str()
}

/// The status changes of auth requests in a DynamoDB stream event, in stream order.
pub fn changes(event: &Value) -> Vec<Change> {
    let records = event.get("Records").and_then(Value::as_array);
    records
        .into_iter()
        .flatten()
        .filter_map(|record| {
            let change = record.get("dynamodb")?;
            let pk = string(change.get("Keys")?, "pk")?;
            let auth_req_id = pk.strip_prefix("AUTHREQ#")?;
            let new = change.get("NewImage").and_then(|i| string(i, "status"));
            let old = change.get("OldImage").and_then(|i| string(i, "status"));
            let decided = matches!(new, Some("approved" | "denied" | "expired"));
            (decided && new != old).then(|| Change {
                auth_req_id: auth_req_id.to_owned(),
                sequence_number: change
                    .get("SequenceNumber")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect()
}

/// Handles one stream batch; answers the partial batch response (`ReportBatchItemFailures`).
pub async fn handle(notifier: &Notifier, event: &Value) -> Value {
    for change in changes(event) {
        let failure = match notifier.process(&change.auth_req_id).await {
            Ok(Outcome::Delivered | Outcome::Skipped(_)) => None,
            Ok(Outcome::Failed(reason)) => Some(reason),
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = failure {
            tracing::warn!(auth_req_id = %change.auth_req_id, %reason, "notification failed");
            return json!({"batchItemFailures": [{"itemIdentifier": change.sequence_number}]});
        }
    }
    json!({"batchItemFailures": []})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: &str, pk: &str, old: Option<&str>, new: Option<&str>) -> Value {
        let image =
            |status: Option<&str>| status.map(|s| json!({"pk": {"S": pk}, "status": {"S": s}}));
        json!({
            "eventName": "MODIFY",
            "dynamodb": {
                "Keys": {"pk": {"S": pk}, "sk": {"S": "AUTHREQ"}},
                "OldImage": image(old),
                "NewImage": image(new),
                "SequenceNumber": seq,
            }
        })
    }

    #[test]
    fn only_status_changes_to_decided_or_expired_are_changes() {
        let event = json!({"Records": [
            record("1", "AUTHREQ#a", Some("pending"), Some("approved")),
            record("2", "AUTHREQ#b", Some("pending"), Some("pending")),
            record("3", "AUTHREQ#c", Some("approved"), Some("redeemed")),
            record("4", "TXN#x", None, Some("approved")),
            record("5", "AUTHREQ#d", Some("pending"), Some("expired")),
            record("6", "AUTHREQ#e", Some("approved"), Some("approved")),
        ]});
        let ids: Vec<(String, String)> = changes(&event)
            .into_iter()
            .map(|c| (c.auth_req_id, c.sequence_number))
            .collect();
        assert_eq!(ids, [("a".into(), "1".into()), ("d".into(), "5".into())]);
    }

    #[test]
    fn an_event_without_records_has_no_changes() {
        assert!(changes(&json!({})).is_empty());
    }
}
