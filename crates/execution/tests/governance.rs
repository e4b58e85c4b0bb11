//! Governance in the PMR contract: a council approves every change by threshold, and the
//! validator set changes at a height derived from the block that changed it.

mod common;

use alloy_primitives::{aliases::U256, Address, Bytes, B256};
use alloy_sol_types::{SolCall, SolEvent};
use common::{event, genesis, key, keys, Chain};
use pmr_contract::PMR;
use pmr_execution::Receipt;
use pmr_primitives::GenesisValidator;

const DELAY: u64 = pmr_contract::VALIDATOR_CHANGE_DELAY;

/// A chain governed by three council members (keys 0x21..0x23), two of whom must approve, with
/// the genesis validators v0 (key [9; 32]) and v1 (key [10; 32], power 2).
fn council_chain() -> Chain {
    let mut g = genesis();
    g.council = vec![
        key(0x21).address(),
        key(0x22).address(),
        key(0x23).address(),
    ];
    g.admin = key(0x21).address();
    g.council_threshold = 2;
    g.validators.push(GenesisValidator {
        name: "v1".into(),
        consensus_key: hex::encode([10u8; 32]),
        custody_key: None,
        operator: None,
        voting_power: 2,
    });
    Chain::with_genesis(g)
}

fn propose<C: SolCall>(call: C) -> PMR::proposeCall {
    PMR::proposeCall {
        data: Bytes::from(call.abi_encode()),
    }
}

fn approve(id: u64) -> PMR::approveProposalCall {
    PMR::approveProposalCall { id: U256::from(id) }
}

/// The id of the proposal a `propose` receipt created.
fn proposal_id(r: &Receipt) -> u64 {
    let created = event::<PMR::ProposalCreated>(r).expect("ProposalCreated");
    created.id.to::<u64>()
}

fn executed(r: &Receipt) -> bool {
    r.logs
        .iter()
        .any(|l| l.topics.first() == Some(&PMR::ProposalExecuted::SIGNATURE_HASH))
}

fn is_hospital(chain: &Chain, account: Address) -> bool {
    chain.view(PMR::hasRoleCall {
        role: chain.view(PMR::HOSPITAL_ROLECall {}),
        account,
    })
}

/// `(effective height, [(key byte, power)])` of every validator set in the history.
fn history(chain: &Chain) -> Vec<(u64, Vec<(u8, u64)>)> {
    let count: u64 = chain.view(PMR::validatorSetCountCall {}).to();
    (0..count)
        .map(|i| {
            chain.view(PMR::validatorSetAtCall {
                index: U256::from(i),
            })
        })
        .map(|e| {
            (
                e.effectiveHeight,
                e.validators.iter().map(|v| (v.key.0[0], v.power)).collect(),
            )
        })
        .collect()
}

fn vkey(byte: u8) -> B256 {
    B256::repeat_byte(byte)
}

#[test]
fn a_change_needs_the_threshold_of_council_approvals_and_runs_on_the_last_one() {
    let mut chain = council_chain();
    let (a, b, c) = (key(0x21), key(0x22), key(0x23));
    let newcomer = key(0x31).address();
    let register = PMR::registerHospitalCall { hospital: newcomer };

    // With a threshold of 2, no member acts alone, and nobody else acts at all.
    chain.reverts(&a, register.clone(), "AccessControlUnauthorizedAccount");
    chain.reverts(
        &keys().doctor,
        register.clone(),
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &keys().hospital,
        propose(register.clone()),
        "NotCouncilMember",
    );

    let r = chain.ok(&a, propose(register.clone()));
    let id = proposal_id(&r);
    assert!(!executed(&r), "one approval of two");
    assert!(!is_hospital(&chain, newcomer));
    chain.reverts(&a, approve(id), "AlreadyApproved");
    chain.reverts(&keys().hospital, approve(id), "NotCouncilMember");
    chain.reverts(&b, approve(id + 1), "NoSuchProposal");

    let r = chain.ok(&b, approve(id));
    assert!(executed(&r), "the second approval runs it");
    assert!(is_hospital(&chain, newcomer));
    let p = chain.view(PMR::proposalCall { id: U256::from(id) });
    assert!(p.executed && !p.open);
    assert_eq!(p.approvals, U256::from(2));
    chain.reverts(&c, approve(id), "ProposalClosed");
}

#[test]
fn a_proposal_whose_call_fails_fails_its_approval_and_changes_nothing() {
    let mut chain = council_chain();
    let (a, b) = (key(0x21), key(0x22));
    let r = chain.ok(&a, propose(PMR::removeValidatorCall { key: vkey(0x77) }));
    let id = proposal_id(&r);
    let before = history(&chain);
    chain.reverts(&b, approve(id), "NoSuchValidator");
    assert_eq!(history(&chain), before);
    let p = chain.view(PMR::proposalCall { id: U256::from(id) });
    assert!(p.open && !p.executed);
    assert_eq!(
        p.approvals,
        U256::from(1),
        "the failed approval is not counted"
    );
}

#[test]
fn a_council_change_voids_open_proposals() {
    let mut chain = council_chain();
    let (a, b, c) = (key(0x21), key(0x22), key(0x23));
    let stale = proposal_id(&chain.ok(
        &a,
        propose(PMR::registerHospitalCall {
            hospital: key(0x32).address(),
        }),
    ));
    let id = proposal_id(&chain.ok(
        &b,
        propose(PMR::addCouncilMemberCall {
            member: key(0x24).address(),
        }),
    ));
    assert!(executed(&chain.ok(&c, approve(id))));
    let members = chain.view(PMR::councilMembersCall {});
    assert_eq!(members.len(), 4);
    chain.reverts(&c, approve(stale), "ProposalClosed");
    assert!(
        !chain
            .view(PMR::proposalCall {
                id: U256::from(stale)
            })
            .open
    );

    // The threshold cannot exceed the council, nor be 0; removing a member keeps it reachable.
    let over = proposal_id(&chain.ok(
        &a,
        propose(PMR::setCouncilThresholdCall {
            threshold: U256::from(5),
        }),
    ));
    chain.reverts(&b, approve(over), "BadThreshold");
    let zero = proposal_id(&chain.ok(
        &a,
        propose(PMR::setCouncilThresholdCall {
            threshold: U256::ZERO,
        }),
    ));
    chain.reverts(&b, approve(zero), "BadThreshold");
    let remove = proposal_id(&chain.ok(
        &a,
        propose(PMR::removeCouncilMemberCall {
            member: c.address(),
        }),
    ));
    assert!(executed(&chain.ok(&b, approve(remove))));
    assert_eq!(chain.view(PMR::councilMembersCall {}).len(), 3);
    chain.reverts(
        &c,
        propose(PMR::setCouncilThresholdCall {
            threshold: U256::from(1),
        }),
        "NotCouncilMember",
    );
    assert_eq!(chain.view(PMR::councilThresholdCall {}), U256::from(2));
}

#[test]
fn validator_set_changes_take_effect_a_fixed_number_of_blocks_later() {
    let mut chain = council_chain();
    let (a, b) = (key(0x21), key(0x22));
    assert_eq!(history(&chain), vec![(1, vec![(9, 1), (10, 2)])]);
    assert_eq!(
        chain.view(PMR::VALIDATOR_CHANGE_DELAYCall {}),
        U256::from(DELAY)
    );

    let govern = |chain: &mut Chain, data: Bytes| -> (u64, Receipt) {
        let id = proposal_id(&chain.ok(&a, PMR::proposeCall { data }));
        let r = chain.ok(&b, approve(id));
        (chain.exec.head().0, r)
    };

    let (h, r) = govern(
        &mut chain,
        PMR::addValidatorCall {
            key: vkey(11),
            power: 3,
        }
        .abi_encode()
        .into(),
    );
    let changed = event::<PMR::ValidatorSetChanged>(&r).expect("ValidatorSetChanged");
    assert_eq!(changed.effectiveHeight, U256::from(h + DELAY));
    assert_eq!(changed.keys, vec![vkey(9), vkey(10), vkey(11)]);
    assert_eq!(changed.powers, vec![1, 2, 3]);
    let (h2, _) = govern(
        &mut chain,
        PMR::rotateValidatorKeyCall {
            oldKey: vkey(10),
            newKey: vkey(12),
        }
        .abi_encode()
        .into(),
    );
    let (h3, _) = govern(
        &mut chain,
        PMR::setValidatorPowerCall {
            key: vkey(11),
            power: 5,
        }
        .abi_encode()
        .into(),
    );
    let (h4, _) = govern(
        &mut chain,
        PMR::removeValidatorCall { key: vkey(9) }
            .abi_encode()
            .into(),
    );
    assert_eq!(
        history(&chain),
        vec![
            (1, vec![(9, 1), (10, 2)]),
            (h + DELAY, vec![(9, 1), (10, 2), (11, 3)]),
            (h2 + DELAY, vec![(9, 1), (12, 2), (11, 3)]),
            (h3 + DELAY, vec![(9, 1), (12, 2), (11, 5)]),
            (h4 + DELAY, vec![(12, 2), (11, 5)]),
        ]
    );

    // Sets that could not decide are refused, and change nothing.
    let before = history(&chain);
    for (data, reason) in [
        (
            PMR::addValidatorCall {
                key: vkey(11),
                power: 1,
            }
            .abi_encode(),
            "ValidatorExists",
        ),
        (
            PMR::addValidatorCall {
                key: B256::ZERO,
                power: 1,
            }
            .abi_encode(),
            "ZeroValidatorKey",
        ),
        (
            PMR::addValidatorCall {
                key: vkey(13),
                power: 0,
            }
            .abi_encode(),
            "ZeroVotingPower",
        ),
        (
            PMR::setValidatorPowerCall {
                key: vkey(11),
                power: 0,
            }
            .abi_encode(),
            "ZeroVotingPower",
        ),
        (
            PMR::rotateValidatorKeyCall {
                oldKey: vkey(11),
                newKey: vkey(12),
            }
            .abi_encode(),
            "ValidatorExists",
        ),
        (
            PMR::removeValidatorCall { key: vkey(9) }.abi_encode(),
            "NoSuchValidator",
        ),
    ] {
        let id = proposal_id(&chain.ok(&a, PMR::proposeCall { data: data.into() }));
        chain.reverts(&b, approve(id), reason);
    }
    let id = proposal_id(&chain.ok(&a, propose(PMR::removeValidatorCall { key: vkey(11) })));
    assert!(executed(&chain.ok(&b, approve(id))));
    let id = proposal_id(&chain.ok(&a, propose(PMR::removeValidatorCall { key: vkey(12) })));
    chain.reverts(&b, approve(id), "BadValidatorSet");
    assert_eq!(
        history(&chain).len(),
        before.len() + 1,
        "only the removal of 11 landed"
    );
}

#[test]
fn one_validator_set_change_per_block_and_a_one_member_council_acts_alone() {
    // The default genesis: a council of one (the admin), threshold 1.
    let mut chain = Chain::new();
    let admin = keys().admin;
    // A direct call of a governed function by the only member, then a proposal that runs at
    // once, in the same block: the second change of the block is refused (its transaction
    // fails, nothing of it is kept).
    let add = common::sign(
        &admin,
        chain.nonce(&admin),
        &PMR::addValidatorCall {
            key: vkey(11),
            power: 1,
        },
    );
    let add2 = common::sign(
        &admin,
        chain.nonce(&admin) + 1,
        &propose(PMR::addValidatorCall {
            key: vkey(12),
            power: 1,
        }),
    );
    let block = chain.block(&[add, add2]);
    assert!(block.receipts[0].success);
    assert!(!block.receipts[1].success);
    assert!(block.receipts[1]
        .revert_reason()
        .unwrap()
        .contains("ValidatorSetChangedThisBlock"));
    let h = block.height;
    assert_eq!(
        history(&chain),
        vec![(1, vec![(9, 1)]), (h + DELAY, vec![(9, 1), (11, 1)])]
    );
    // In the next block it goes through, as a proposal that runs at once.
    let r = chain.ok(
        &admin,
        propose(PMR::addValidatorCall {
            key: vkey(12),
            power: 1,
        }),
    );
    assert!(executed(&r));
    assert_eq!(history(&chain).len(), 3);
    // ADMIN_ROLE is the council's: it cannot be granted to an account.
    chain.reverts(
        &admin,
        PMR::grantRoleCall {
            role: B256::ZERO,
            account: keys().hospital.address(),
        },
        "AdminIsTheCouncil",
    );
    assert!(chain.view(PMR::hasRoleCall {
        role: B256::ZERO,
        account: admin.address()
    }));
    assert!(!chain.view(PMR::hasRoleCall {
        role: B256::ZERO,
        account: keys().hospital.address()
    }));
    // Nobody else governs.
    chain.reverts(
        &keys().hospital,
        PMR::addValidatorCall {
            key: vkey(13),
            power: 1,
        },
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &keys().hospital,
        propose(PMR::addValidatorCall {
            key: vkey(13),
            power: 1,
        }),
        "NotCouncilMember",
    );
    // The executor's rule for reading the set: the node derives the same history.
    let (set, effective) = {
        let v = chain.view(PMR::validatorsCall {});
        (v.set, v.effectiveHeight)
    };
    assert_eq!(effective, U256::from(h + 1 + DELAY));
    assert_eq!(set.len(), 3);
}

#[test]
fn the_council_changes_the_gas_limits_from_the_next_block_on() {
    let mut chain = council_chain();
    let (a, b) = (key(0x21), key(0x22));
    let limits = |chain: &Chain| {
        let l = chain.exec.gas_limits();
        (l.block_gas_limit, l.tx_gas_limit)
    };
    assert_eq!(limits(&chain), (200_000_000, 10_000_000), "the genesis's");
    // A transaction reserving 4,000,000 gas is admitted under the genesis's limits.
    let k = keys();
    let big = common::sign_to(
        &k.doctor,
        chain.nonce(&k.doctor),
        pmr_contract::PMR_ADDRESS,
        common::key_call(&k.doctor, B256::repeat_byte(1)).abi_encode(),
        4_000_000,
    );
    chain.exec.check_tx(&big).unwrap();

    // Out of bounds: refused, nothing changes.
    for (block, tx) in [
        (10_000_000, 1_999_999),
        (2_500_000, 3_000_000),
        (8_000_000_001, 3_000_000),
    ] {
        let id = proposal_id(&chain.ok(
            &a,
            propose(PMR::setGasLimitsCall {
                blockGasLimit: block,
                txGasLimit: tx,
            }),
        ));
        chain.reverts(&b, approve(id), "BadGasLimits");
    }
    assert_eq!(limits(&chain), (200_000_000, 10_000_000));
    chain.reverts(
        &k.doctor,
        PMR::setGasLimitsCall {
            blockGasLimit: 50_000_000,
            txGasLimit: 3_000_000,
        },
        "AccessControlUnauthorizedAccount",
    );

    let id = proposal_id(&chain.ok(
        &a,
        propose(PMR::setGasLimitsCall {
            blockGasLimit: 50_000_000,
            txGasLimit: 3_000_000,
        }),
    ));
    let r = chain.ok(&b, approve(id));
    assert!(event::<PMR::GasLimitsSet>(&r).is_some());
    assert_eq!(limits(&chain), (50_000_000, 3_000_000));
    // The next block runs with them: the same transaction now reserves too much.
    assert_eq!(
        chain.exec.check_tx(&big),
        Err(pmr_execution::TxRejection::GasLimitTooHigh {
            limit: 4_000_000,
            max: 3_000_000
        })
    );
    let refused = chain
        .exec
        .execute_block(&chain.next_env(), &[big])
        .expect_err("a block holding it is invalid");
    assert!(refused.to_string().contains("gas"), "{refused}");
}

#[test]
fn the_council_cannot_lock_itself_out_nor_overflow_the_voting_power() {
    let mut chain = council_chain();
    let (a, b) = (key(0x21), key(0x22));
    for (data, reason) in [
        // A member off the permission list could not approve any more.
        (
            PMR::setPermittedCall {
                account: key(0x23).address(),
                permitted: false,
            }
            .abi_encode(),
            "CouncilMemberStaysPermitted",
        ),
        // The contract itself as a member would approve whatever it is made to.
        (
            PMR::addCouncilMemberCall {
                member: pmr_contract::PMR_ADDRESS,
            }
            .abi_encode(),
            "NotCouncilMember",
        ),
        // Nodes add voting power in 64 bits: a set's total stays at most 2^60.
        (
            PMR::addValidatorCall {
                key: vkey(11),
                power: 1 << 60,
            }
            .abi_encode(),
            "BadValidatorSet",
        ),
    ] {
        let id = proposal_id(&chain.ok(&a, PMR::proposeCall { data: data.into() }));
        chain.reverts(&b, approve(id), reason);
    }
    assert!(chain.view(PMR::isPermittedCall {
        account: key(0x23).address()
    }));
    assert_eq!(chain.view(PMR::councilMembersCall {}).len(), 3);
    assert_eq!(history(&chain).len(), 1);
}
