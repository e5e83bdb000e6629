//! The `wiremesh-cni` binary: the CNI plugin's edge. It reads stdin and the `CNI_*`
//! environment, runs the library, and prints a result or a CNI error object on stdout. It
//! never panics out: a runtime must always get an error object it can parse.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use wiremesh::cni::{env::Invocation, plugin, spec, CniError};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // Unwind safety: after a panic nothing of the closure's state is used again.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read.map_err(|e| CniError::io("read the network configuration from stdin", e))?;
        // Only valid UTF-8 variables count: the spec's are ASCII, and `env::vars` would panic.
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let inv = Invocation::from_vars(vars)?;
        plugin::run(&inv, &stdin)
    }));
    let version = plugin::answer_version(&stdin);
    let (text, ok) = match outcome {
        Ok(Ok(text)) => (text, true),
        Ok(Err(e)) => (error_json(&e.to_object(&version)), false),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let object = spec::ErrorObject {
                cni_version: version,
                code: spec::code::INTERNAL,
                msg: format!("wiremesh-cni failed internally: {why}"),
                details: String::new(),
            };
            (error_json(&object), false)
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn error_json(object: &spec::ErrorObject) -> String {
    serde_json::to_string(object).unwrap_or_else(|_| {
        format!(
            r#"{{"cniVersion":"{}","code":{},"msg":"error"}}"#,
            object.cni_version, object.code
        )
    })
}
