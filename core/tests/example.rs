//! Runs the library example (`cargo run -p ferry-core --example custom_components`) as a
//! test, so it keeps working.

#[path = "../examples/custom_components.rs"]
#[allow(dead_code)] // the example's `main` is for `cargo run`
mod custom_components;

#[tokio::test]
async fn custom_components_example_runs_in_rust_and_from_yaml() {
    let (from_rust, from_yaml) = custom_components::example().await.expect("example runs");
    assert_eq!(
        from_rust,
        vec![
            "RECORD 5 (+0 headers)",
            "RECORD 4 (+0 headers)",
            "RECORD 3 (+0 headers)",
            "RECORD 2 (+0 headers)",
            "RECORD 1 (+0 headers)",
        ]
    );
    // 25 records (the `${EXAMPLE_COUNT:-25}` default), each with the header the YAML's
    // insert_headers transform added.
    assert_eq!(from_yaml.len(), 25);
    assert_eq!(from_yaml[0], "RECORD 25 (+1 headers)");
    assert_eq!(from_yaml[24], "RECORD 1 (+1 headers)");
}
