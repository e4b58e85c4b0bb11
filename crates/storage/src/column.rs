/// The column families of a node's database.
///
/// Adding a column is backwards compatible: a database opened by an older build gains the new
/// column family empty. Renaming or removing one is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// Small singletons: last committed height, chain id, schema version.
    Meta,
    /// Encoded blocks by big-endian height.
    Blocks,
    /// Block height by block hash.
    BlockHashes,
    /// Commit certificates by big-endian height.
    Certificates,
    /// (height, index) by transaction hash.
    TxIndex,
    /// Proposals seen but not yet decided, for crash recovery of a round.
    Undecided,
    /// Execution: accounts by address.
    Accounts,
    /// Execution: contract storage by (address, slot).
    Storage,
    /// Execution: contract code by code hash.
    Code,
    /// Execution: receipts by big-endian height.
    Receipts,
    /// Content: blocks of record ciphertext by CID.
    Blobs,
    /// Content: pinned roots.
    Pins,
    /// Share custody: sealed custodian shares by token.
    Shares,
}

impl Column {
    /// Every column, in a fixed order.
    pub const ALL: [Column; 13] = [
        Column::Meta,
        Column::Blocks,
        Column::BlockHashes,
        Column::Certificates,
        Column::TxIndex,
        Column::Undecided,
        Column::Accounts,
        Column::Storage,
        Column::Code,
        Column::Receipts,
        Column::Blobs,
        Column::Pins,
        Column::Shares,
    ];

    /// The column family's name on disk.
    pub const fn name(self) -> &'static str {
        match self {
            Column::Meta => "meta",
            Column::Blocks => "blocks",
            Column::BlockHashes => "block_hashes",
            Column::Certificates => "certificates",
            Column::TxIndex => "tx_index",
            Column::Undecided => "undecided",
            Column::Accounts => "accounts",
            Column::Storage => "storage",
            Column::Code => "code",
            Column::Receipts => "receipts",
            Column::Blobs => "blobs",
            Column::Pins => "pins",
            Column::Shares => "shares",
        }
    }
}
