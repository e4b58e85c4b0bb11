//! pmr-content
