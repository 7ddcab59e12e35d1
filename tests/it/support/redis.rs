//! Redis fixture (being written)
