//! Prints the engine's table with the JSON Schemas of every operation's parameters and
//! result: `{"operations": [...], "params": {...}, "results": {...}}` on one line. What
//! `scripts/gen-dotnet` reads to generate the C# and C++ typed doors (run by the suite
//! as `target/debug/examples/schemas`, which `cargo test --workspace` builds).
use std::io::Write;

fn main() -> std::io::Result<()> {
    let all = serde_json::json!({
        "operations": o365_essentials_core::ops::operations_json(),
        "params": o365_essentials_core::ops::params_schemas_json(),
        "results": o365_essentials_core::ops::result_schemas_json(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{all}")?;
    out.flush()
}
