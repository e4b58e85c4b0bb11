//! What a run must show: each invariant judges the samples the runner took and the chains it
//! fetched, and the report collects them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use alloy_primitives::B256;
use serde::Serialize;

use super::spec::{Action, Fault, Scenario};
use crate::load::LoadReport;

/// One checked invariant.
#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    /// Short name (`no-loss`, `progress`, `recovered`, `halted`, `evidence`, `clock`, ...).
    pub name: String,
    /// Whether the run upheld it.
    pub passed: bool,
    /// What was checked and what was seen, in a sentence.
    pub detail: String,
}

/// What a scenario run showed.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// Nodes in the testnet (all validators).
    pub validators: usize,
    /// The faults the scenario injected.
    pub faults: Vec<Fault>,
    /// Transactions the load generator saw committed.
    pub acknowledged: u64,
    /// Of those, missing from some node's chain.
    pub lost: u64,
    /// Heights at which nodes hold different blocks.
    pub forks: u64,
    /// From the end of the run (every fault healed) until every node had the height the
    /// network had then.
    pub recovery_ms: u64,
    /// The height up to which every node's chain was fetched and compared.
    pub final_height: u64,
    /// Every invariant checked, in order.
    pub invariants: Vec<Invariant>,
    /// The load run's report, when the scenario ran load.
    pub load: Option<LoadReport>,
}

impl ScenarioReport {
    /// Whether every invariant passed.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|i| i.passed)
    }

    /// Human-readable summary, one line per invariant, ending in `PASSED` or `FAILED`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "scenario {}: {} validators, {} faults, final height {}\n\
             acknowledged {} tx, lost {}, forks {}, recovery {:.1} s\n",
            self.name,
            self.validators,
            self.faults.len(),
            self.final_height,
            self.acknowledged,
            self.lost,
            self.forks,
            self.recovery_ms as f64 / 1000.0
        );
        if let Some(l) = &self.load {
            s.push_str(&format!(
                "load: {} offered at {:.0}/s, {} accepted ({} sent to the next node, {} deferred, {} resent), {} finalized, {} never committed, commit p50 {:.0} ms p99 {:.0} ms, rejected {:?}\n",
                l.offered,
                l.offered_rate,
                l.accepted,
                l.failovers,
                l.deferred,
                l.resubmitted,
                l.finalized,
                l.uncommitted,
                l.commit_latency_ms.p50,
                l.commit_latency_ms.p99,
                l.rejected
            ));
        }
        for i in &self.invariants {
            s.push_str(&format!(
                "  [{}] {:<10} {}\n",
                if i.passed { "ok" } else { "FAILED" },
                i.name,
                i.detail
            ));
        }
        s.push_str(if self.passed() {
            "PASSED\n"
        } else {
            "FAILED\n"
        });
        s
    }
}

/// One observation of the network during the run.
#[derive(Clone, Debug)]
pub(super) struct Sample {
    pub(super) at: Duration,
    /// The harness's real clock, ms since the Unix epoch.
    pub(super) wall_ms: u64,
    /// The observer's height and tip timestamp (`None`: it did not answer).
    pub(super) height: Option<u64>,
    pub(super) tip_timestamp_ms: Option<u64>,
    pub(super) faulty: usize,
    pub(super) no_quorum: bool,
    /// Nodes cut off from the larger side of the partition in place.
    pub(super) cut_off: Vec<usize>,
    /// Every node's height, sampled during a partition.
    pub(super) all: Option<Vec<Option<u64>>>,
}

/// `(time, observer height, faulty nodes)` per sample; a sample the observer did not answer
/// keeps the last height seen.
pub(super) fn observed_heights(samples: &[Sample]) -> Vec<(Duration, u64, usize)> {
    let mut last = 0;
    samples
        .iter()
        .map(|s| {
            last = s.height.unwrap_or(last);
            (s.at, last, s.faulty)
        })
        .collect()
}

/// A committed block as the checks see it.
pub(super) struct ChainEntry {
    pub(super) hash: B256,
    pub(super) state_root: B256,
    pub(super) timestamp_ms: u64,
    pub(super) txs: Vec<B256>,
}

/// A block committed at the moment of a cut may still land; after this, none may.
pub(super) const CUT_GRACE: Duration = Duration::from_secs(3);

/// `halted`: during a partition, no side without a quorum committed a block (after
/// [`CUT_GRACE`], for one decided at the cut): with a quorum on neither side, the highest height
/// of any node stays put; otherwise the highest height of the cut-off nodes does. A node a
/// block behind may still sync that block from its own side, which commits nothing new, so
/// only the maximum counts; it is taken from samples every watched node answered.
pub(super) fn halted(samples: &[Sample]) -> Invariant {
    let mut grew = Vec::new();
    let mut watched = 0usize;
    // (start of the partition, who is watched, the highest height at the first full sample)
    let mut current: Option<(Duration, Vec<usize>, Option<u64>)> = None;
    for s in samples {
        let (Some(all), false) = (&s.all, s.cut_off.is_empty()) else {
            current = None;
            continue;
        };
        let who: Vec<usize> = if s.no_quorum {
            (0..all.len()).collect()
        } else {
            s.cut_off.clone()
        };
        if current.as_ref().is_none_or(|(_, w, _)| *w != who) {
            current = Some((s.at, who.clone(), None));
        }
        let Some((start, _, base)) = current.as_mut() else {
            continue;
        };
        if s.at < *start + CUT_GRACE {
            continue;
        }
        let heights: Option<Vec<u64>> =
            who.iter().map(|i| all.get(*i).copied().flatten()).collect();
        let Some(top) = heights.and_then(|h| h.into_iter().max()) else {
            continue;
        };
        watched += 1;
        let b = *base.get_or_insert(top);
        if top > b {
            grew.push((who.clone(), b, top, s.at));
        }
    }
    Invariant {
        name: "halted".into(),
        passed: grew.is_empty() && watched > 0,
        detail: if grew.is_empty() {
            format!("no side without a quorum committed a block during the partition ({watched} samples in which every watched node answered)")
        } else {
            format!("a side without a quorum grew (nodes, from, to, at): {grew:?}")
        },
    }
}

/// A record from `GetEvidence` as the consensus library checks it.
pub(super) fn to_equivocation(
    e: &pmr_client::proto::Equivocation,
) -> Option<pmr_consensus::Equivocation> {
    use pmr_consensus::EquivocationKind as K;
    let value = |v: &[u8]| (!v.is_empty()).then(|| B256::try_from(v).ok()).flatten();
    let value_or_nil = |v: &[u8]| -> Option<Option<B256>> {
        if v.is_empty() {
            Some(None)
        } else {
            value(v).map(Some)
        }
    };
    Some(pmr_consensus::Equivocation {
        height: e.height,
        round: e.round,
        validator: pmr_primitives::ValidatorAddress(
            alloy_primitives::Address::try_from(e.validator.as_slice()).ok()?,
        ),
        kind: match e.kind.as_str() {
            "proposal" => K::Proposal,
            "prevote" => K::Prevote,
            "precommit" => K::Precommit,
            _ => return None,
        },
        values: [
            value_or_nil(&e.first_value)?,
            value_or_nil(&e.second_value)?,
        ],
        signed: [
            e.first_signed.clone().into(),
            e.second_signed.clone().into(),
        ],
    })
}

/// `evidence`: another node recorded an equivocation of every double-signing validator, and
/// the record checks out offline against the genesis validator set (both messages signed by
/// that validator, for one height and round, signing different things).
pub(super) async fn evidence_recorded(
    scenario: &Scenario,
    dir: &Path,
    clients: &[pmr_client::PmrClient],
) -> Invariant {
    let fail = |detail: String| Invariant {
        name: "evidence".into(),
        passed: false,
        detail,
    };
    let genesis = match pmr_primitives::Genesis::load(&dir.join("genesis.json")) {
        Ok(g) => g,
        Err(e) => return fail(format!("cannot read the genesis: {e}")),
    };
    let validators = match pmr_consensus::validator_set(&genesis) {
        Ok(v) => v,
        Err(e) => return fail(format!("cannot build the validator set: {e}")),
    };
    let twinned: BTreeSet<usize> = scenario.nodes_of(Action::Twin).into_iter().collect();
    let mut missing = Vec::new();
    let mut found = Vec::new();
    let mut refused = 0usize;
    for &i in &twinned {
        let Ok(status) = clients[i].status().await else {
            missing.push(format!("node {i} (no status)"));
            continue;
        };
        let address = status.validator_address;
        let mut seen_by = Vec::new();
        let mut kinds = BTreeSet::new();
        for (j, c) in clients.iter().enumerate() {
            if twinned.contains(&j) {
                continue;
            }
            let Ok(records) = c.evidence().await else {
                continue;
            };
            let mut valid = false;
            for r in records.iter().filter(|e| e.validator == address) {
                match to_equivocation(r).map(|e| e.verify(&validators, genesis.chain_id)) {
                    Some(Ok(())) => {
                        valid = true;
                        kinds.insert(r.kind.clone());
                    }
                    _ => refused += 1,
                }
            }
            if valid {
                seen_by.push(j);
            }
        }
        if seen_by.is_empty() {
            missing.push(format!("node {i}"));
        } else {
            found.push(format!("node {i}: {kinds:?} recorded by nodes {seen_by:?}"));
        }
    }
    Invariant {
        name: "evidence".into(),
        passed: missing.is_empty() && refused == 0,
        detail: if missing.is_empty() && refused == 0 {
            format!(
                "equivocation of every double signer recorded and verified against the genesis: {}",
                found.join("; ")
            )
        } else {
            format!(
                "no verified evidence against {}; {refused} records failed verification",
                if missing.is_empty() {
                    "-".to_string()
                } else {
                    missing.join(", ")
                }
            )
        },
    }
}

/// How far ahead of real time a block timestamp may be: the nodes' `max_clock_drift` (2 s by
/// default) plus sampling slack.
pub(super) const CLOCK_SLACK_MS: u64 = 3_000;

/// `clock`: timestamps grow block by block, and the tip never ran ahead of real time.
pub(super) fn clock_sane(samples: &[Sample], chain: &[ChainEntry]) -> Invariant {
    let backwards = chain
        .windows(2)
        .filter(|w| w[1].timestamp_ms <= w[0].timestamp_ms)
        .count();
    let ahead: Vec<u64> = samples
        .iter()
        .filter_map(|s| s.tip_timestamp_ms.map(|t| t.saturating_sub(s.wall_ms)))
        .filter(|d| *d > CLOCK_SLACK_MS)
        .collect();
    Invariant {
        name: "clock".into(),
        passed: backwards == 0 && ahead.is_empty(),
        detail: format!(
            "{backwards} block timestamps not after their parent's; tip ahead of real time by more than {CLOCK_SLACK_MS} ms in {} samples{}",
            ahead.len(),
            ahead.iter().max().map_or(String::new(), |m| format!(" (at most {m} ms)"))
        ),
    }
}

/// Time the chain gets to resume after more than f validators were down (their peers' round
/// timeouts have grown meanwhile, and returning nodes must start and catch up first).
pub(super) const RESUME_GRACE: Duration = Duration::from_secs(15);

/// Stretches (start, end) of at least `window` with at most `f` nodes down (and at least
/// [`RESUME_GRACE`] after any moment with more than `f` down) in which the observed height did
/// not grow, and how many such stretches were judged at all (none judged proves nothing).
pub(super) fn stalled_stretches(
    samples: &[(Duration, u64, usize)],
    f: usize,
    window: Duration,
) -> (Vec<(Duration, Duration)>, usize) {
    let mut eligible = Vec::with_capacity(samples.len());
    let mut last_outage: Option<Duration> = None;
    for &(t, _, down) in samples {
        if down > f {
            last_outage = Some(t);
        }
        eligible.push(down <= f && last_outage.is_none_or(|o| t >= o + RESUME_GRACE));
    }
    let mut out = Vec::new();
    let mut judged = 0;
    let mut i = 0;
    while i < samples.len() {
        if !eligible[i] {
            i += 1;
            continue;
        }
        // The first sample at least `window` later, if the stretch stays eligible until then.
        let mut j = i;
        while j + 1 < samples.len() && eligible[j + 1] && samples[j + 1].0 - samples[i].0 < window {
            j += 1;
        }
        if j + 1 < samples.len() && eligible[j + 1] {
            judged += 1;
            if samples[j + 1].1 <= samples[i].1 {
                out.push((samples[i].0, samples[j + 1].0));
            }
        }
        i += 4;
    }
    (out, judged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_only_count_with_at_most_f_down() {
        let s = |t: u64, h: u64, d: usize| (Duration::from_millis(t), h, d);
        // Growing: no stall.
        let grow: Vec<_> = (0..40).map(|k| s(k * 250, k, 0)).collect();
        let (stalls, judged) = stalled_stretches(&grow, 1, Duration::from_secs(6));
        assert!(stalls.is_empty());
        assert_eq!(
            judged, 4,
            "windows starting at 0, 1, 2 and 3 s end within the 9.75 s"
        );
        // Flat with 2 of 4 down: allowed, and nothing judged.
        let halted: Vec<_> = (0..40).map(|k| s(k * 250, 5, 2)).collect();
        assert_eq!(
            stalled_stretches(&halted, 1, Duration::from_secs(6)),
            (vec![], 0)
        );
        // Too short a run to judge a 6 s window.
        let short: Vec<_> = (0..20).map(|k| s(k * 250, k, 0)).collect();
        assert_eq!(stalled_stretches(&short, 1, Duration::from_secs(6)).1, 0);
        // Flat with 1 down: a stall.
        let flat: Vec<_> = (0..40).map(|k| s(k * 250, 5, 1)).collect();
        assert!(!stalled_stretches(&flat, 1, Duration::from_secs(6))
            .0
            .is_empty());
        // After 2 of 4 were down the chain gets RESUME_GRACE before a flat stretch counts.
        let after: Vec<_> = (0..160)
            .map(|k| s(k * 250, 5, if k < 20 { 2 } else { 0 }))
            .collect();
        let (stalls, _) = stalled_stretches(&after, 1, Duration::from_secs(6));
        assert!(!stalls.is_empty());
        assert!(stalls
            .iter()
            .all(|(from, _)| *from >= Duration::from_millis(19 * 250) + RESUME_GRACE));
    }

    fn sample(ms: u64, all: &[u64], no_quorum: bool) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            wall_ms: 1_000_000 + ms,
            height: all.first().copied(),
            tip_timestamp_ms: Some(1_000_000 + ms),
            faulty: if no_quorum { 2 } else { 0 },
            no_quorum,
            cut_off: if no_quorum { vec![2, 3] } else { vec![] },
            all: no_quorum.then(|| all.iter().map(|h| Some(*h)).collect()),
        }
    }

    #[test]
    fn halted_fails_when_the_chain_grows_without_a_quorum() {
        // 2|2 from 1 s to 10 s; a block decided at the cut lands within the grace.
        let mut quiet = vec![sample(0, &[5, 5, 5, 5], false)];
        quiet.extend((1..=10).map(|s| {
            let h = if s == 1 { 6 } else { 7 };
            sample(s * 1000, &[h, h, h, 6], true)
        }));
        // Node 3 syncs the block it missed from its side: the maximum does not move.
        quiet.push(sample(10_500, &[7, 7, 7, 7], true));
        let ok = halted(&quiet);
        assert!(ok.passed, "{}", ok.detail);
        let mut grew = quiet.clone();
        grew.push(sample(11_000, &[8, 7, 7, 7], true));
        let bad = halted(&grew);
        assert!(!bad.passed, "{}", bad.detail);
        // Never watched (no sample after the grace): not a pass.
        assert!(!halted(&quiet[..3]).passed);
        // A node that did not answer gives no base: the later answer is not growth.
        let mut late = vec![sample(0, &[5, 5, 5, 5], false)];
        // Node 0 committed the block decided at the cut; it misses two samples' deadline.
        late.extend((1..=6).map(|s| sample(s * 1000, &[7, 6, 6, 6], true)));
        late[4].all.as_mut().unwrap()[0] = None;
        late[5].all.as_mut().unwrap()[0] = None;
        let r = halted(&late);
        assert!(r.passed, "{}", r.detail);
    }

    #[test]
    fn halted_watches_the_cut_off_side_when_the_rest_has_a_quorum() {
        let mut s: Vec<Sample> = (1..=8)
            .map(|t| {
                let mut x = sample(t * 1000, &[10 + t, 10 + t, 10 + t, 9], true);
                x.no_quorum = false;
                x.cut_off = vec![3];
                x
            })
            .collect();
        let r = halted(&s);
        assert!(
            r.passed,
            "the majority grows, node 3 stays put: {}",
            r.detail
        );
        s[7].all.as_mut().unwrap()[3] = Some(12);
        assert!(!halted(&s).passed, "an isolated node committed a block");
    }

    #[test]
    fn clock_fails_on_a_tip_ahead_of_real_time_or_time_going_back() {
        let entry = |t: u64| ChainEntry {
            hash: B256::ZERO,
            state_root: B256::ZERO,
            timestamp_ms: t,
            txs: vec![],
        };
        let chain = vec![entry(1), entry(2), entry(3)];
        let samples: Vec<Sample> = (0..10).map(|s| sample(s * 250, &[1], false)).collect();
        assert!(clock_sane(&samples, &chain).passed);
        let mut ahead = samples.clone();
        ahead[4].tip_timestamp_ms = Some(ahead[4].wall_ms + 30_000);
        assert!(!clock_sane(&ahead, &chain).passed);
        let back = vec![entry(1), entry(3), entry(3)];
        assert!(!clock_sane(&samples, &back).passed);
    }
}
