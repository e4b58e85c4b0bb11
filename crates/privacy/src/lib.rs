//! pmr-privacy
