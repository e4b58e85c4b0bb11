//! `pmr blob put|get|stat|pin|unpin`: files encrypted here, stored as ciphertext by the nodes.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use eyre::Result;
use pmr_client::files::{get_file, put_file, TransferProgress};
use pmr_client::BlobStat;
use serde::Serialize;

use crate::args::NodeArgs;
use crate::Output;

#[derive(Subcommand)]
pub(crate) enum BlobCommand {
    /// Encrypt FILE on this machine with a fresh key (XChaCha20-Poly1305), upload only the
    /// ciphertext, write the key to FILE.key (mode 0600) and print the blob's root CID.
    Put {
        /// The file to store.
        file: PathBuf,
        /// Write the key here instead of FILE.key (never overwritten).
        #[arg(long)]
        key: Option<PathBuf>,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Download a blob (from any node: it fetches from its peers), decrypt it with KEYFILE and
    /// write the plaintext to -o FILE (mode 0600), only once all of it has authenticated.
    Get {
        /// Root CID of the blob.
        cid: String,
        /// Where to write the plaintext.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Key file written by `pmr blob put`.
        #[arg(long)]
        key: PathBuf,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Whether the node holds a blob, pins it, its size and which peers hold it.
    Stat {
        /// Root CID of the blob.
        cid: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Operators: fetch a blob from peers if needed and pin it on the node.
    Pin {
        /// Root CID of the blob.
        cid: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Operators: unpin a blob; its blocks go at the node's next garbage collection.
    Unpin {
        /// Root CID of the blob.
        cid: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

impl BlobCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            BlobCommand::Put {
                file,
                key,
                quiet,
                node,
            } => {
                let c = node.connect().await?;
                let put = put_file(
                    &c,
                    &file,
                    key.as_deref(),
                    Progress::new("uploading", !quiet),
                )
                .await?;
                if out == Output::Text {
                    eprintln!(
                        "stored {} ({} bytes, {} encrypted); key written to {} (mode 0600): keep \
                         it, the blob cannot be read without it",
                        file.display(),
                        put.plaintext_size,
                        put.size,
                        put.key_file.display()
                    );
                    println!("{}", put.root_cid);
                    return Ok(());
                }
                out.show(&Json(put))
            }
            BlobCommand::Get {
                cid,
                out: path,
                key,
                quiet,
                node,
            } => {
                let c = node.connect().await?;
                let progress = Progress::new("downloading", !quiet);
                let got = get_file(&c, &cid, &path, &key, progress).await?;
                if out == Output::Text {
                    println!("wrote {} bytes to {}", got.bytes, got.output.display());
                    return Ok(());
                }
                out.show(&Json(got))
            }
            BlobCommand::Stat { cid, node } => {
                out.show(&StatView(node.connect().await?.blob_stat(&cid).await?))
            }
            BlobCommand::Pin { cid, node } => {
                out.show(&StatView(node.connect().await?.pin(&cid).await?))
            }
            BlobCommand::Unpin { cid, node } => {
                let was_pinned = node.connect().await?.unpin(&cid).await?;
                out.show(&Unpinned {
                    root_cid: cid,
                    was_pinned,
                })
            }
        }
    }
}

/// A result printed as JSON only (its text form is printed by the command).
#[derive(Serialize)]
#[serde(transparent)]
struct Json<T>(T);

impl<T> fmt::Display for Json<T> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// `pmr blob stat|pin`.
struct StatView(BlobStat);

impl Serialize for StatView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct V<'a> {
            root_cid: &'a str,
            local: bool,
            pinned: bool,
            size: Option<u64>,
            blocks_local: u64,
            replicas: &'a [String],
        }
        let b = &self.0;
        V {
            root_cid: &b.root_cid,
            local: b.local,
            pinned: b.pinned,
            size: b.size,
            blocks_local: b.blocks_local,
            replicas: &b.replica_peer_ids,
        }
        .serialize(s)
    }
}

impl fmt::Display for StatView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        writeln!(f, "root cid      {}", s.root_cid)?;
        writeln!(f, "local         {}", s.local)?;
        writeln!(f, "pinned        {}", s.pinned)?;
        match s.size {
            Some(n) => writeln!(f, "size          {n}")?,
            None => writeln!(f, "size          unknown (root not on this node)")?,
        }
        writeln!(f, "blocks here   {}", s.blocks_local)?;
        write!(f, "replicas      {}", s.replica_peer_ids.len())?;
        for p in &s.replica_peer_ids {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// `pmr blob unpin`.
#[derive(Serialize)]
struct Unpinned {
    root_cid: String,
    was_pinned: bool,
}

impl fmt::Display for Unpinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.was_pinned {
            true => write!(
                f,
                "unpinned {}; its blocks go at the next garbage collection",
                self.root_cid
            ),
            false => write!(f, "{} was not pinned", self.root_cid),
        }
    }
}

/// Files smaller than this get no progress lines.
const PROGRESS_MIN: u64 = 8 * 1024 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Progress of a long transfer on stderr: an indicatif bar (bytes, rate, time left) on a
/// terminal; in a log, an "N MiB / M MiB" line at most once a second.
struct Progress {
    what: &'static str,
    wanted: bool,
    enabled: bool,
    total: u64,
    done: u64,
    last: Instant,
    shown: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(what: &'static str, wanted: bool) -> Self {
        Self {
            what,
            wanted,
            enabled: false,
            total: 0,
            done: 0,
            last: Instant::now(),
            shown: false,
            bar: None,
        }
    }

    fn line(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let pct = match self.total {
            0 => 100,
            t => self.done.saturating_mul(100) / t,
        };
        format!(
            "{}: {:.1} MiB / {:.1} MiB ({pct}%)",
            self.what,
            self.done as f64 / MIB,
            self.total as f64 / MIB
        )
    }
}

impl TransferProgress for Progress {
    fn begin(&mut self, total: u64) {
        self.total = total;
        self.enabled = self.wanted && total >= PROGRESS_MIN;
        if self.enabled && std::io::stderr().is_terminal() {
            let style = indicatif::ProgressStyle::with_template(
                "{msg:>11} [{bar:40.cyan/blue}] {binary_bytes}/{binary_total_bytes} \
                 {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            )
            .with_style(style)
            .with_message(self.what);
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        } else if self.enabled && self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            eprintln!("{}", self.line());
            self.shown = true;
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.set_position(self.done);
            bar.finish();
        } else if std::mem::take(&mut self.shown) {
            eprintln!("{}", self.line());
        }
    }
}
