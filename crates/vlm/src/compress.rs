//! compress (work in progress)
