#![no_main]
// o365_essentials_core::fuzzing::config: see its documentation for the input's shape.
libfuzzer_sys::fuzz_target!(|data: &[u8]| o365_essentials_core::fuzzing::config(data));
