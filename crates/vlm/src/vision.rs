//! vision (work in progress)
