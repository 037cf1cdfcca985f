//! The README's configuration reference stays in sync with `SdpoConfig`.

use sdpo::core::SdpoConfig;

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    std::fs::read_to_string(path).expect("README.md")
}

/// `(field, default)` pairs from the table between the config-reference markers.
fn table_rows(readme: &str) -> Vec<(String, String)> {
    let start = readme
        .find("<!-- config-reference:start -->")
        .expect("start marker");
    let end = readme
        .find("<!-- config-reference:end -->")
        .expect("end marker");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let strip = |c: &str| {
                c.trim()
                    .trim_start_matches("| ")
                    .trim_matches('`')
                    .to_string()
            };
            (strip(cells[0]), strip(cells[1]))
        })
        .collect()
}

#[test]
fn config_reference_lists_every_field_with_its_default() {
    let defaults = serde_json::to_value(SdpoConfig::default()).unwrap();
    let defaults = defaults.as_object().unwrap();
    let rows = table_rows(&readme());
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    for key in defaults.keys() {
        assert!(
            names.contains(&key.as_str()),
            "README config reference lacks `{key}`"
        );
    }
    for (name, default) in &rows {
        let value = defaults
            .get(name)
            .unwrap_or_else(|| panic!("README lists `{name}`, which SdpoConfig does not have"));
        let want = serde_json::to_string(value).unwrap();
        // JSON prints 2.0 as 2.0 and strings with escapes, as the README writes them.
        assert_eq!(default, &want, "README default of `{name}`");
    }
    assert_eq!(
        rows.len(),
        defaults.len(),
        "duplicate rows in the README table"
    );
}
