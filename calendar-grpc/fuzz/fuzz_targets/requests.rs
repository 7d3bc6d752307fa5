//! Any bytes as the body of any calendar RPC: decoded and validated as the service does, they
//! are accepted or refused naming request fields, and nothing panics
//! (`calendar_grpc::robustness::check`). The first byte picks the RPC.

#![no_main]

use calendar_grpc::robustness::{Rpc, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, body)) = data.split_first() {
        let rpc = Rpc::ALL[usize::from(selector) % Rpc::ALL.len()];
        if let Err(broken) = check(rpc, body) {
            panic!("{rpc:?}: {broken}");
        }
    }
});
