//! projector (work in progress)
