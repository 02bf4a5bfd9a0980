//! oto
