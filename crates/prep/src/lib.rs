//! `prep`: turns a folder of labelled images into the `train/`, `validation/` and `test/` class
//! folders that `flow_from_directory` reads, as in the post:
//!
//! ```text
//! data/
//!     train/
//!         cats/   cat.0.jpg ... cat.999.jpg
//!         dogs/   dog.0.jpg ... dog.999.jpg
//!     validation/
//!         cats/   cat.1000.jpg ... cat.1499.jpg
//!         dogs/   dog.1000.jpg ... dog.1499.jpg
//!     split.json
//! ```
//!
//! - The source is a flat Kaggle-style folder (`cat.12.jpg`: the class is the plural of the
//!   label before the first `.`) or a folder with one subfolder per class ([`source`]).
//! - Each class's files are taken in numeric order of their index, or shuffled with a seed;
//!   every chosen file is decoded once, and undecodable ones are listed and replaced by the next
//!   file (or make the split fail with `strict`).
//! - Photos a user has confirmed as bad (an `audit.json`, a JSON array or a text list, see
//!   [`exclude`]) are removed before the selection, so the next ones in order take their
//!   places; the manifest records them, so a different list is a different split.
//! - Files are hard-linked where possible, copied otherwise, and keep their names.
//! - The split is built in a staging folder and moved into place with its manifest
//!   (`split.json`, [`manifest`]) last; rerunning with the same arguments is a no-op, and a
//!   different existing split is only replaced with `force`.
//! - Without a source, the public `cats_and_dogs_filtered.zip` archive is downloaded once,
//!   verified and unpacked ([`fetch`]).
//!
//! [`run_split`] does the work from a [`SplitOptions`]; the `prep` binary only parses flags.

#![warn(missing_docs)]

mod decode;
pub mod error;
pub mod exclude;
pub mod fetch;
pub mod manifest;
pub mod source;
pub mod split;

pub use error::{FetchError, Rejected, SplitError};
pub use exclude::{ExcludeList, Unmatched};
pub use fetch::{RemoteArchive, ResolvedSource, resolve_source};
pub use manifest::{MANIFEST_FILE, Manifest, Order, Subset};
pub use source::{Layout, plural};
pub use split::{LinkStats, Outcome, SplitOptions, SplitReport, run_split};
