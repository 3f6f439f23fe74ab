//! The committed C header must match what cbindgen generates from the source.

#[test]
fn committed_header_is_up_to_date() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen runs")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf8 header");
    let path = format!("{dir}/include/o365_essentials.h");
    if std::env::var_os("O365_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/o365_essentials.h is stale: run `O365_BLESS=1 cargo test -p o365-essentials-ffi --test header` and commit it"
    );
}
