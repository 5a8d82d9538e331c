//! Newtypes for the numbers Kafka passes around, so they cannot be mixed up.

use std::fmt;

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

newtype!(
    /// A Kafka log offset: the position of a record in a partition.
    Offset(i64)
);
newtype!(
    /// A partition leader epoch; with replication this is the Raft term.
    LeaderEpoch(i32)
);

impl Offset {
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}
