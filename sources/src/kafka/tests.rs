//! Unit tests of the `kafka` source.

use super::*;

#[test]
fn selector_names_and_patterns() {
    let s = TopicSelector::parse(&["orders".into(), "/payments\\..*/".into()]).unwrap();
    assert!(s.matches("orders"));
    assert!(s.matches("payments.eu"));
    assert!(!s.matches("payments"));
    assert!(!s.matches("__consumer_offsets"));
    assert!(TopicSelector::parse(&["/(/".into()]).is_err());
    assert!(TopicSelector::parse(&[]).is_err());
}

#[test]
fn start_parses_keywords_and_times() {
    let p = |s: &str| serde_json::from_value::<StartAt>(serde_json::json!(s));
    assert_eq!(p("earliest").unwrap(), StartAt::Earliest);
    assert_eq!(p("1970-01-01T00:00:01Z").unwrap(), StartAt::Time(1000));
    assert!(p("yesterday").is_err());
}
