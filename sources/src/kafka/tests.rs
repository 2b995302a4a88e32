//! Unit tests of the `kafka` source.

use super::*;

#[test]
fn start_parses_keywords_and_times() {
    let p = |s: &str| serde_json::from_value::<StartAt>(serde_json::json!(s));
    assert_eq!(p("earliest").unwrap(), StartAt::Earliest);
    assert_eq!(p("1970-01-01T00:00:01Z").unwrap(), StartAt::Time(1000));
    assert!(p("yesterday").is_err());
}
