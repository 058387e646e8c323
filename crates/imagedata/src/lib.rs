//! imagedata
