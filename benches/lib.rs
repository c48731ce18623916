//! Criterion benchmarks of pipekit live in `benches/`; this library is empty.
