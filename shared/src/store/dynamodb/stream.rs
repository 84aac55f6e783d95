//! The table's stream, read as the item layout wrote it: which records are auth requests whose
//! status changed to one their client must hear of (CIBA Core §10.2, §10.3, §12).

use aws_lambda_events::event::dynamodb::Event;
use serde_dynamo::{AttributeValue, Item};

use super::layout::AUTHREQ_PREFIX;
use crate::domain::Status;

/// A request whose status changed to one its client must hear of, and the stream position.
#[derive(Debug, PartialEq)]
pub struct Change {
    pub auth_req_id: String,
    pub sequence_number: String,
}

/// The status changes of auth requests in a DynamoDB stream event, in stream order: records of
/// an auth request item whose new status is approved, denied or expired and differs from the old.
pub fn changes(event: &Event) -> Vec<Change> {
    event
        .records
        .iter()
        .filter_map(|record| {
            let change = &record.change;
            string(&change.keys, "pk")?.strip_prefix(AUTHREQ_PREFIX)?;
            // The key holds the request's locator (its txn), the image its whole id.
            let auth_req_id = string(&change.new_image, "auth_req_id")?;
            let new = status(&change.new_image);
            let old = status(&change.old_image);
            let decided = matches!(
                new,
                Some(Status::Approved | Status::Denied | Status::Expired)
            );
            (decided && new != old).then(|| Change {
                auth_req_id: auth_req_id.to_owned(),
                sequence_number: change.sequence_number.clone().unwrap_or_default(),
            })
        })
        .collect()
}

fn string<'a>(image: &'a Item, attribute: &str) -> Option<&'a str> {
    match image.get(attribute)? {
        AttributeValue::S(value) => Some(value),
        _ => None,
    }
}

fn status(image: &Item) -> Option<Status> {
    Status::parse(string(image, "status")?)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn record(seq: &str, pk: &str, old: Option<&str>, new: Option<&str>) -> Value {
        let id = format!("{}.secret", pk.split_once('#').map_or(pk, |(_, id)| id));
        let image = |status: Option<&str>| {
            status.map(|s| json!({"pk": {"S": pk}, "auth_req_id": {"S": id}, "status": {"S": s}}))
        };
        json!({
            "awsRegion": "eu-west-1",
            "eventID": format!("event-{seq}"),
            "eventName": "MODIFY",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"pk": {"S": pk}, "sk": {"S": "AUTHREQ"}},
                "OldImage": image(old),
                "NewImage": image(new),
                "SequenceNumber": seq,
                "SizeBytes": 64,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
        })
    }

    fn event(records: Vec<Value>) -> Event {
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    #[test]
    fn only_status_changes_to_decided_or_expired_are_changes() {
        let event = event(vec![
            record("1", "AUTHREQ#a", Some("pending"), Some("approved")),
            record("2", "AUTHREQ#b", Some("pending"), Some("pending")),
            record("3", "AUTHREQ#c", Some("approved"), Some("redeemed")),
            record("4", "TXN#x", None, Some("approved")),
            record("5", "AUTHREQ#d", Some("pending"), Some("expired")),
            record("6", "AUTHREQ#e", Some("approved"), Some("approved")),
        ]);
        let ids: Vec<(String, String)> = changes(&event)
            .into_iter()
            .map(|c| (c.auth_req_id, c.sequence_number))
            .collect();
        assert_eq!(
            ids,
            [
                ("a.secret".into(), "1".into()),
                ("d.secret".into(), "5".into())
            ]
        );
    }

    #[test]
    fn an_event_without_records_has_no_changes() {
        assert!(changes(&Event::default()).is_empty());
        assert!(changes(&event(vec![])).is_empty());
    }
}
