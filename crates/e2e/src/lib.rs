//! End-to-end tests across the stages live in `tests/`: whole runs of the three methods and
//! the report built from their artifacts, damaged artifacts caught by every reader, runs killed
//! mid-write leaving nothing behind, several classes through every backbone. The stage crates
//! do not depend on one another; this crate, which nothing depends on, is where they meet.
