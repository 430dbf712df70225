//! `Debug` as `Display` for the crate's error types: one human sentence either way.

/// Implements `Debug` as `Display` for error types, so that `Debug` (what `main` prints for
/// an `Err`, and `unwrap` shows) reads as the same one sentence.
macro_rules! debug_as_display {
    ($($t:ty),* $(,)?) => {$(
        impl ::std::fmt::Debug for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(self, f)
            }
        }
    )*};
}
pub(crate) use debug_as_display;
