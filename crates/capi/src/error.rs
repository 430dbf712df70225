//! Status codes, the thread-local last error message, and [`guard`], the one place every
//! exported function runs its body so that no panic unwinds into C.

use kiln_runtime::{BorrowError, RuntimeError};
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Success.
pub const KILN_OK: i32 = 0;
/// A caller mistake: a null pointer, an index out of range, an unknown dtype code or backend,
/// a name that is not UTF-8.
pub const KILN_ERROR_ARGUMENT: i32 = 1;
/// The file could not be read, or is not a valid `.kiln` module.
pub const KILN_ERROR_FORMAT: i32 = 2;
/// Building the backend's code for the module failed.
pub const KILN_ERROR_COMPILE: i32 = 3;
/// The inputs do not match the signature: a missing or unknown name, a wrong dtype or
/// shape, an inconsistent symbol.
pub const KILN_ERROR_INPUT: i32 = 4;
/// The run itself failed.
pub const KILN_ERROR_RUN: i32 = 5;
/// A caller's output buffer is too small.
pub const KILN_ERROR_BUFFER: i32 = 6;
/// A bug in kiln: a panic was caught at the boundary (the module must not be used again).
pub const KILN_ERROR_PANIC: i32 = 7;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its status code and its one-line message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn argument(message: impl Into<String>) -> Failure {
        Failure {
            code: KILN_ERROR_ARGUMENT,
            message: message.into(),
        }
    }
}

/// The status code of a runtime error.
pub(crate) fn code_of(e: &RuntimeError) -> i32 {
    match e {
        RuntimeError::Input(_) => KILN_ERROR_INPUT,
        RuntimeError::Format(_) => KILN_ERROR_FORMAT,
        RuntimeError::UnknownBackend(_) => KILN_ERROR_ARGUMENT,
        RuntimeError::Pass(_)
        | RuntimeError::Fuse(_)
        | RuntimeError::Verify(_)
        | RuntimeError::MissingState(_)
        | RuntimeError::UnknownOutput(_) => KILN_ERROR_COMPILE,
        _ => KILN_ERROR_RUN,
    }
}

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Failure {
        Failure {
            code: code_of(&e),
            message: e.to_string(),
        }
    }
}

impl From<BorrowError> for Failure {
    fn from(e: BorrowError) -> Failure {
        Failure::argument(e.to_string())
    }
}

/// Stores `message` as this thread's last error.
fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = text);
}

/// The message of this thread's last failed call ("" before any failure).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Runs `body`, turning its failure, or a panic, into a status code and the thread's last
/// error message. The message of a successful call is left as it was (no allocation).
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => KILN_OK,
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(&format!("internal error in kiln (please report): {what}"));
            KILN_ERROR_PANIC
        }
    }
}
