//! pmr-execution
