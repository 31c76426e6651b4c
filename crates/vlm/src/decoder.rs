//! decoder (work in progress)
