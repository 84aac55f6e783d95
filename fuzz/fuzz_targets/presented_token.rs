#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ciba_fuzz::presented_token(data));
