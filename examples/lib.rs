//! Runnable examples of pipekit live in `examples/`; this library is empty.
