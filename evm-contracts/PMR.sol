// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";

/// @title PMR: patient medical records as non-transferable ERC-721 tokens.
/// @notice Each record is a token owned by a one-time address of its patient (ERC-5192:
/// permanently locked), derived for that record from the patient's stealth meta-address as
/// ERC-5564 (secp256k1, view tags) derives them: nothing on-chain links two records to each
/// other or to the patient, and only the patient's viewing key finds them. The record itself
/// lives encrypted in content-addressed storage; on-chain are only its CIDs, the commitment to
/// its key, its record type sealed under the stealth shared secret, the ERC-5564 announcement
/// (ephemeral key and view tag), and sealed key shares (ciphertext). Patients are registered
/// under a commitment to their pseudonym, never a name or free text.
/// @dev The node's executor reads `_permitted` directly from storage to admit transactions (its
/// slot comes from the storage layout in the compiled artifact); keep it a plain mapping.
///
/// Minting is the hot path of a PMR network (thousands per block), so its storage is laid out
/// for it: every keccak and storage access of a mint costs execution time on every validator.
/// A mint computes no storage key (no keccak): it reads the hospital's account word (HOSPITAL
/// flag, mirrored from AccessControl), updates the one-time owner's (token count) and writes the
/// record (owner and announcement inline), all found by addition (see "storage regions").
/// OpenZeppelin's ERC-721 owner and balance mappings are therefore not used: `_ownerOf` and
/// `balanceOf` are overridden to read the record and the account word (the extension points
/// OpenZeppelin v5 documents for this), and `_update`, through which every transfer, burn and
/// OpenZeppelin mint passes, refuses to move a record.
contract PMR is ERC721, AccessControl {
    /// Network governance (the council, see "governance"); the admin of every role.
    bytes32 public constant ADMIN_ROLE = DEFAULT_ADMIN_ROLE;
    /// May register patients and mint records.
    bytes32 public constant HOSPITAL_ROLE = keccak256("PMR_HOSPITAL");
    /// Holds key shares; may log share releases.
    bytes32 public constant CUSTODIAN_ROLE = keccak256("PMR_CUSTODIAN");

    /// Largest sealed share accepted, in bytes.
    uint256 public constant MAX_SEALED_SHARE_BYTES = 512;

    /// ERC-5192 interface id.
    bytes4 private constant ERC5192_INTERFACE_ID = 0xb45a3c0e;

    /// A CID as the network's content store makes them, CIDv1 with a one-byte codec and a
    /// 32-byte BLAKE3 multihash, whose 36 bytes are `0x01 codec 0x1e 0x20 digest`: only the
    /// codec (below 0x80, so one varint byte) and the digest vary, and only they are passed
    /// and stored.
    struct Cid {
        uint8 codec;
        bytes32 digest;
    }

    /// Per-account facts the mint path needs, in one word: whether the account holds
    /// HOSPITAL_ROLE (kept equal to AccessControl's membership by `_grantRole`/`_revokeRole`),
    /// whether it is a registered patient, and how many records it owns (ERC-721 `balanceOf`;
    /// one for a one-time owner).
    struct Account {
        bool hospital;
        bool patient;
        uint64 balance;
    }

    /// A record with its one-time owner, its ERC-5564 announcement and its first version (as
    /// minted) inline: a mint writes six fresh slots, the first packing owner, version count, the
    /// two codecs, view tag, ephemeral key prefix and sealed type. Records never move.
    struct Record {
        address owner;
        uint32 versionCount;
        uint8 rootCodec;
        uint8 envelopeCodec;
        uint8 viewTag;
        uint8 ephemeralPrefix;
        uint32 sealedType;
        address hospital;
        bytes32 rootDigest;
        bytes32 envelopeDigest;
        bytes32 keyCommitment;
        bytes32 ephemeralX;
    }

    /// A one-time owner as ERC-5564 announces it: the owner's address, the ephemeral public key
    /// `R` (compressed: prefix 2 or 3 and x), the view tag (first byte of the hashed shared
    /// secret) and the record type sealed under that secret (a 32-bit one-time pad only the
    /// minting hospital and the viewing-key holder can remove).
    struct OneTimeOwner {
        address owner;
        bytes32 ephemeralX;
        uint8 ephemeralPrefix;
        uint8 viewTag;
        uint32 sealedType;
    }

    struct Version {
        bytes32 rootDigest;
        bytes32 envelopeDigest;
        bytes32 keyCommitment;
        uint8 rootCodec;
        uint8 envelopeCodec;
    }

    struct Grant {
        uint64 expiry;
        bool revoked;
        uint32 version;
        bytes sealedShare;
    }

    mapping(address account => bool) private _permitted;
    mapping(address account => bytes32) private _encryptionKeys;
    mapping(address patient => bytes32) private _pseudonymCommitments;
    /// Versions 1 and later (version 0 is inline in the record).
    mapping(uint256 tokenId => mapping(uint256 version => Version)) private _versions;
    mapping(uint256 tokenId => mapping(address grantee => Grant)) private _grants;
    /// Records minted so far; token ids are 1 to `_lastTokenId`.
    uint256 private _lastTokenId;
    /// Each account's signature (EIP-191) over `encryptionKeyDigest` of its current key: what
    /// lets a client check the key it seals shares to without trusting the node that told it.
    mapping(address account => bytes) private _keySignatures;
    /// Accounts the admin removed from the permission list: no registration permits them again.
    mapping(address account => bool) private _removed;
    /// Each patient's ERC-5564 stealth meta-address: spending and viewing public keys, 33 bytes
    /// each (compressed), as the patient signed them at registration.
    mapping(address patient => bytes) private _metaAddresses;

    /// A custodian of record-key shares: its operator account and X25519 custody key.
    struct ShareCustodian {
        address operator;
        bytes32 custodyKey;
    }

    /// Share custodians in the order they were added (the genesis's first).
    ShareCustodian[] private _shareCustodians;

    /// The gas limits, governed: `block << 64 | transaction`, the most gas one block's
    /// transactions may use together and the most one transaction may reserve. Each block is
    /// executed with the limits its parent's state holds (the node reads this word directly).
    uint256 private _gasLimits;

    /// Domain of the message an account signs to publish its keys.
    bytes32 private constant KEY_DOMAIN = keccak256("PMR encryption key v2");
    /// Length of a stealth meta-address.
    uint256 private constant META_ADDRESS_BYTES = 66;

    // ----- storage regions -----

    /// Records and account words live in two regions of their own, placed as ERC-7201 places a
    /// namespace (`keccak256(abi.encode(uint256(keccak256(id)) - 1)) & ~bytes32(uint256(0xff))`
    /// with ids `pmr.storage.records` and `pmr.storage.accounts`; the tests recompute both):
    /// token `id`'s record is the `RECORD_WORDS` words from `RECORDS + RECORD_WORDS * id`, and
    /// account `a`'s word is at `ACCOUNTS + a`. Like a Solidity array's elements, these are found
    /// by addition instead of a keccak per access as a mapping's are, so a mint computes no
    /// storage key at all, and a block's new records lie in consecutive slots (which the node
    /// stores together, see `state_db.rs` of the execution crate). Both regions are far from
    /// every other slot of the contract: those are small numbers or keccak outputs, which fall
    /// in a 2^160-slot region with probability 2^-96 each.
    uint256 private constant RECORDS = 0xb69ce4d59410c5226730066eee5782963abf74a50971baec92360e1fd79c5d00;
    uint256 private constant ACCOUNTS = 0x27a708f33bce5065fb29ce91012a4ec247ffe559b4168e250ab0bed7b2f03d00;
    uint256 private constant RECORD_WORDS = 6;

    /// The record of token `tokenId`. Only for a token that exists (1 to `_lastTokenId`):
    /// callers check with `_requireOwned` or `_ownerOf` first, or mint it.
    function _record(uint256 tokenId) private pure returns (Record storage r) {
        assembly ("memory-safe") {
            r.slot := add(RECORDS, mul(tokenId, RECORD_WORDS))
        }
    }

    /// The account word of `account`.
    function _account(address account) private pure returns (Account storage a) {
        assembly ("memory-safe") {
            a.slot := add(ACCOUNTS, account)
        }
    }

    // ----- events -----
    event PermissionSet(address indexed account, bool permitted, address indexed by);
    event HospitalRegistered(address indexed hospital, address indexed by);
    event CustodianAdded(address indexed custodian, address indexed by);
    event PatientRegistered(
        address indexed patient,
        address indexed hospital,
        bytes32 pseudonymCommitment,
        bytes32 encryptionKey,
        bytes stealthMetaAddress
    );
    event EncryptionKeySet(address indexed account, bytes32 encryptionKey);
    /// A record minted to a one-time owner, with its ERC-5564 announcement. Nothing here names
    /// the patient, the minting hospital or the record type.
    event RecordMinted(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 ephemeralX,
        uint8 ephemeralPrefix,
        uint8 viewTag,
        uint32 sealedType,
        Cid root,
        Cid envelope,
        bytes32 keyCommitment
    );
    event RecordVersionAppended(
        uint256 indexed tokenId, uint32 indexed version, address indexed by, Cid root, Cid envelope, bytes32 keyCommitment
    );
    event AccessGranted(
        uint256 indexed tokenId, address indexed grantee, uint64 expiry, uint32 version, bytes sealedShare
    );
    event AccessRevoked(uint256 indexed tokenId, address indexed grantee);
    event ShareReleased(
        uint256 indexed tokenId, address indexed grantee, address indexed custodian, uint32 version, bytes32 challengeHash
    );
    /// ERC-5192: emitted once per token, at mint; tokens never unlock.
    event Locked(uint256 tokenId);

    // ----- errors -----
    error ZeroAddress();
    error CustodyKeysMismatch();
    error BadGasLimits(uint64 blockGasLimit, uint64 txGasLimit);
    event GasLimitsSet(uint64 blockGasLimit, uint64 txGasLimit);
    /// The least transaction gas limit governance may set.
    uint64 public constant MIN_TX_GAS_LIMIT = 2_000_000;
    /// The most block gas limit governance may set.
    uint64 public constant MAX_BLOCK_GAS_LIMIT = 8_000_000_000;
    error ZeroCustodyKey();
    /// The account or its custody key is already a share custodian's.
    error CustodianExists(address custodian);
    error NotPermitted(address account);
    error RecordNotTransferable(uint256 tokenId);
    error ApprovalsDisabled();
    error PatientAlreadyRegistered(address patient);
    error ZeroPseudonymCommitment();
    error ZeroEncryptionKey();
    error BadKeySignature(address account);
    /// A stealth meta-address that is not two compressed secp256k1 keys (66 bytes, each
    /// starting 0x02 or 0x03).
    error BadStealthMetaAddress();
    /// An ephemeral key whose prefix is not 0x02 or 0x03.
    error BadEphemeralKey(uint8 prefix);
    /// A mint to an owner that is a hospital, a patient or already owns a record.
    error OwnerNotFresh(address owner);
    error AccountRemoved(address account);
    error ZeroKeyCommitment();
    /// A CID codec that is not one varint byte (0x80 or more).
    error UnsupportedCodec(uint8 codec);
    error NotRecordOwner(uint256 tokenId, address caller);
    error NotRecordEditor(uint256 tokenId, address caller);
    error VersionOutOfRange(uint256 tokenId, uint256 version, uint256 versionCount);
    error GranteeHasNoEncryptionKey(address grantee);
    error ExpiryNotInFuture(uint64 expiry, uint256 blockTimestamp);
    error EmptySealedShare();
    error SealedShareTooLong(uint256 length, uint256 max);
    error NoGrant(uint256 tokenId, address grantee);
    error NoLiveGrant(uint256 tokenId, address grantee);

    /// `council` governs the network (see "governance"): `threshold` of its members approve every
    /// change. `validatorKeys` (ed25519) and `validatorPowers` are the genesis validator set,
    /// which decides from height 1.
    constructor(
        address[] memory council,
        uint256 threshold,
        bytes32[] memory validatorKeys,
        uint64[] memory validatorPowers,
        address[] memory hospitals,
        address[] memory custodians,
        bytes32[] memory custodyKeys,
        address[] memory permitted,
        uint64 blockGasLimit,
        uint64 txGasLimit
    ) ERC721("PMR Medical Record", "PMR") {
        // The genesis's limits as given (`Genesis::validate` checked them); later ones are
        // bounded by `setGasLimits`.
        _gasLimits = (uint256(blockGasLimit) << 64) | txGasLimit;
        for (uint256 i = 0; i < council.length; i++) {
            _addCouncilMember(council[i]);
        }
        _setCouncilThreshold(threshold);
        if (validatorKeys.length != validatorPowers.length) revert BadValidatorSet();
        Validator[] memory set = new Validator[](validatorKeys.length);
        for (uint256 i = 0; i < set.length; i++) {
            set[i] = Validator(validatorKeys[i], validatorPowers[i]);
        }
        _storeValidatorSet(set, 1);
        for (uint256 i = 0; i < hospitals.length; i++) {
            _registerHospital(hospitals[i]);
        }
        if (custodians.length != custodyKeys.length) revert CustodyKeysMismatch();
        for (uint256 i = 0; i < custodians.length; i++) {
            _addCustodian(custodians[i], custodyKeys[i]);
        }
        for (uint256 i = 0; i < permitted.length; i++) {
            if (permitted[i] == address(0)) revert ZeroAddress();
            _setPermitted(permitted[i], true);
        }
    }

    // ----- governance -----
    //
    // A council of accounts governs the network: `councilThreshold` of its members approve
    // every change of roles, permissions, council or validator set. A member proposes a call of
    // this contract (`propose`); the members approve it (`approveProposal`; the proposer's counts); the
    // approval that reaches the threshold makes the call, as the contract itself, which is what
    // every governed function admits (`hasRole` of ADMIN_ROLE). With a threshold of 1 a
    // member's proposal runs at once, and a member may also call governed functions directly
    // (a one-member council is a development network's single admin). A change of the council
    // or of its threshold voids every open proposal: approvals were given by the old council.
    //
    // The validator set lives here too, as a history of sets each with the height from which it
    // decides. A change decided in block h decides from h + VALIDATOR_CHANGE_DELAY; every node
    // reads the history from the state and gives the consensus engine the set of each height.

    /// Blocks between the block that changes the validator set and the first height it decides
    /// (more than the heights ahead a node buffers proposals for, whose proposers it must know).
    uint256 public constant VALIDATOR_CHANGE_DELAY = 5;
    /// Most validators in a set.
    uint256 public constant MAX_VALIDATORS = 128;
    /// Most voting power of a whole set.
    uint256 public constant MAX_TOTAL_POWER = 1 << 60;
    /// Most council members.
    uint256 public constant MAX_COUNCIL = 64;
    /// Blocks after which an unexecuted proposal can no longer be approved.
    uint256 public constant PROPOSAL_LIFETIME = 100_000;

    struct Validator {
        bytes32 key;
        uint64 power;
    }

    struct ValidatorSetEntry {
        uint64 effectiveHeight;
        Validator[] validators;
    }

    struct Proposal {
        address proposer;
        uint64 expiresAt;
        uint32 councilEpoch;
        uint32 approvals;
        bool executed;
        bytes data;
    }

    address[] private _council;
    mapping(address account => bool) private _isCouncil;
    uint256 private _threshold;
    /// Bumped by every change of the council or threshold; proposals of an older epoch are void.
    uint32 private _councilEpoch;
    Proposal[] private _proposals;
    mapping(uint256 id => mapping(address member => bool)) private _approvedBy;
    ValidatorSetEntry[] private _validatorSets;

    event ProposalCreated(uint256 indexed id, address indexed proposer, bytes data);
    event ProposalApproved(uint256 indexed id, address indexed member, uint256 approvals);
    event ProposalExecuted(uint256 indexed id);
    event CouncilMemberAdded(address indexed member);
    event CouncilMemberRemoved(address indexed member);
    event CouncilThresholdSet(uint256 threshold);
    /// The validator set that decides from `effectiveHeight` on.
    event ValidatorSetChanged(uint256 effectiveHeight, bytes32[] keys, uint64[] powers);

    error NotCouncilMember(address account);
    /// A council member cannot be taken off the permission list (remove it from the council).
    error CouncilMemberStaysPermitted(address member);
    /// ADMIN_ROLE is the council's (add a council member instead).
    error AdminIsTheCouncil();
    error BadThreshold(uint256 threshold, uint256 members);
    error AlreadyCouncilMember(address account);
    error CouncilFull();
    error NoSuchProposal(uint256 id);
    error ProposalClosed(uint256 id);
    error AlreadyApproved(uint256 id, address member);
    error EmptyProposal();
    error BadValidatorSet();
    error ZeroValidatorKey();
    error ZeroVotingPower();
    error ValidatorExists(bytes32 key);
    error NoSuchValidator(bytes32 key);
    /// The validator set already changed in this block: approve again in a later one.
    error ValidatorSetChangedThisBlock();

    /// ADMIN_ROLE is held by governance alone: the contract itself running an approved proposal,
    /// or a council member when one approval suffices. It is not granted to accounts.
    function hasRole(bytes32 role, address account) public view override returns (bool) {
        if (role == DEFAULT_ADMIN_ROLE) return _isGovernance(account);
        return super.hasRole(role, account);
    }

    function _isGovernance(address account) private view returns (bool) {
        return account == address(this) || (_threshold == 1 && _isCouncil[account]);
    }

    /// Proposes `data`, a call of this contract (a governed function and its arguments), and
    /// approves it; runs it when the threshold is 1. Only council members.
    function propose(bytes calldata data) external returns (uint256 id) {
        if (!_isCouncil[_msgSender()]) revert NotCouncilMember(_msgSender());
        if (data.length < 4) revert EmptyProposal();
        id = _proposals.length;
        Proposal storage p = _proposals.push();
        p.proposer = _msgSender();
        p.expiresAt = uint64(block.number + PROPOSAL_LIFETIME);
        p.councilEpoch = _councilEpoch;
        p.data = data;
        emit ProposalCreated(id, _msgSender(), data);
        _approve(id, p);
    }

    /// Approves proposal `id`; the approval that reaches the threshold runs it (and fails, with
    /// the call's own error, if the call fails). Only council members, once each.
    function approveProposal(uint256 id) external {
        if (!_isCouncil[_msgSender()]) revert NotCouncilMember(_msgSender());
        if (id >= _proposals.length) revert NoSuchProposal(id);
        _approve(id, _proposals[id]);
    }

    function _approve(uint256 id, Proposal storage p) private {
        if (p.executed || p.councilEpoch != _councilEpoch || block.number > p.expiresAt) {
            revert ProposalClosed(id);
        }
        if (_approvedBy[id][_msgSender()]) revert AlreadyApproved(id, _msgSender());
        _approvedBy[id][_msgSender()] = true;
        p.approvals += 1;
        emit ProposalApproved(id, _msgSender(), p.approvals);
        if (p.approvals >= _threshold) {
            p.executed = true;
            (bool ok, bytes memory ret) = address(this).call(p.data);
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
            emit ProposalExecuted(id);
        }
    }

    /// Proposal `id`: who proposed it, its call, its approvals so far, whether it ran, the last
    /// block it may be approved in, and whether it is still open (neither run, expired nor voided
    /// by a council change).
    function proposal(uint256 id)
        external
        view
        returns (address proposer, bytes memory data, uint256 approvals, bool executed, uint256 expiresAt, bool open)
    {
        if (id >= _proposals.length) revert NoSuchProposal(id);
        Proposal storage p = _proposals[id];
        open = !p.executed && p.councilEpoch == _councilEpoch && block.number <= p.expiresAt;
        return (p.proposer, p.data, p.approvals, p.executed, p.expiresAt, open);
    }

    /// Whether council member `member` approved proposal `id`.
    function approvedBy(uint256 id, address member) external view returns (bool) {
        return _approvedBy[id][member];
    }

    /// Proposals made so far; ids are 0 to `proposalCount() - 1`.
    function proposalCount() external view returns (uint256) {
        return _proposals.length;
    }

    /// The council's members.
    function councilMembers() external view returns (address[] memory) {
        return _council;
    }

    /// Approvals a proposal needs.
    function councilThreshold() external view returns (uint256) {
        return _threshold;
    }

    /// Adds `member` to the council (and permits it). Governed.
    function addCouncilMember(address member) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _addCouncilMember(member);
        _councilEpoch += 1;
    }

    /// Removes `member` from the council; the threshold must stay reachable. Governed.
    function removeCouncilMember(address member) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!_isCouncil[member]) revert NotCouncilMember(member);
        if (_threshold > _council.length - 1) revert BadThreshold(_threshold, _council.length - 1);
        _isCouncil[member] = false;
        for (uint256 i = 0; i < _council.length; i++) {
            if (_council[i] == member) {
                _council[i] = _council[_council.length - 1];
                _council.pop();
                break;
            }
        }
        _councilEpoch += 1;
        emit CouncilMemberRemoved(member);
    }

    /// Sets the approvals a proposal needs (1 to the council's size). Governed.
    function setCouncilThreshold(uint256 threshold) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setCouncilThreshold(threshold);
        _councilEpoch += 1;
    }

    function _addCouncilMember(address member) private {
        if (member == address(0)) revert ZeroAddress();
        if (member == address(this)) revert NotCouncilMember(member);
        if (_isCouncil[member]) revert AlreadyCouncilMember(member);
        if (_council.length >= MAX_COUNCIL) revert CouncilFull();
        _isCouncil[member] = true;
        _council.push(member);
        _removed[member] = false;
        _setPermitted(member, true);
        emit CouncilMemberAdded(member);
    }

    function _setCouncilThreshold(uint256 threshold) private {
        if (threshold == 0 || threshold > _council.length) revert BadThreshold(threshold, _council.length);
        _threshold = threshold;
        emit CouncilThresholdSet(threshold);
    }

    /// Adds a validator with ed25519 key `key` and weight `power`. Governed.
    function addValidator(bytes32 key, uint64 power) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Validator[] memory current = _latestValidators();
        if (_indexOf(current, key) < current.length) revert ValidatorExists(key);
        Validator[] memory next = new Validator[](current.length + 1);
        for (uint256 i = 0; i < current.length; i++) {
            next[i] = current[i];
        }
        next[current.length] = Validator(key, power);
        _scheduleValidatorSet(next);
    }

    /// Removes the validator with key `key`; the set must keep one. Governed.
    function removeValidator(bytes32 key) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Validator[] memory current = _latestValidators();
        uint256 idx = _indexOf(current, key);
        if (idx == current.length) revert NoSuchValidator(key);
        Validator[] memory next = new Validator[](current.length - 1);
        uint256 j = 0;
        for (uint256 i = 0; i < current.length; i++) {
            if (i != idx) next[j++] = current[i];
        }
        _scheduleValidatorSet(next);
    }

    /// Sets the voting power of the validator with key `key`. Governed.
    function setValidatorPower(bytes32 key, uint64 power) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Validator[] memory next = _latestValidators();
        uint256 idx = _indexOf(next, key);
        if (idx == next.length) revert NoSuchValidator(key);
        next[idx].power = power;
        _scheduleValidatorSet(next);
    }

    /// Replaces the key of the validator with key `oldKey` by `newKey`, keeping its power: the
    /// operator's node signs with the new key from the height the change takes effect. Governed.
    function rotateValidatorKey(bytes32 oldKey, bytes32 newKey) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Validator[] memory next = _latestValidators();
        uint256 idx = _indexOf(next, oldKey);
        if (idx == next.length) revert NoSuchValidator(oldKey);
        if (_indexOf(next, newKey) < next.length) revert ValidatorExists(newKey);
        next[idx].key = newKey;
        _scheduleValidatorSet(next);
    }

    /// The latest validator set and the height from which it decides (a height after the
    /// current block's while a change is pending).
    function validators() external view returns (Validator[] memory set, uint256 effectiveHeight) {
        ValidatorSetEntry storage e = _validatorSets[_validatorSets.length - 1];
        return (e.validators, e.effectiveHeight);
    }

    /// How many validator sets the chain has had (the genesis's is entry 0).
    function validatorSetCount() external view returns (uint256) {
        return _validatorSets.length;
    }

    /// Validator set `index` of the history, oldest first, and the height from which it
    /// decides: what a node derives the set of each height from, one entry per call (a set
    /// costs at most `MAX_VALIDATORS` storage reads, well within a call's gas).
    function validatorSetAt(uint256 index) external view returns (ValidatorSetEntry memory) {
        return _validatorSets[index];
    }

    function _latestValidators() private view returns (Validator[] memory) {
        return _validatorSets[_validatorSets.length - 1].validators;
    }

    function _indexOf(Validator[] memory set, bytes32 key) private pure returns (uint256) {
        for (uint256 i = 0; i < set.length; i++) {
            if (set[i].key == key) return i;
        }
        return set.length;
    }

    /// `set` decides from `VALIDATOR_CHANGE_DELAY` blocks after this one. One change per block:
    /// a block's one `ValidatorSetChanged` event is then the whole change, which is what lets a
    /// joining node check the history from a receipt proof per change.
    function _scheduleValidatorSet(Validator[] memory set) private {
        uint256 effective = block.number + VALIDATOR_CHANGE_DELAY;
        if (_validatorSets[_validatorSets.length - 1].effectiveHeight >= effective) {
            revert ValidatorSetChangedThisBlock();
        }
        _storeValidatorSet(set, effective);
    }

    function _storeValidatorSet(Validator[] memory set, uint256 effective) private {
        if (set.length == 0 || set.length > MAX_VALIDATORS) revert BadValidatorSet();
        uint256 total = 0;
        for (uint256 i = 0; i < set.length; i++) {
            total += set[i].power;
        }
        // Nodes add voting power in 64 bits.
        if (total > MAX_TOTAL_POWER) revert BadValidatorSet();
        ValidatorSetEntry storage e = _validatorSets.push();
        e.effectiveHeight = uint64(effective);
        bytes32[] memory keys = new bytes32[](set.length);
        uint64[] memory powers = new uint64[](set.length);
        for (uint256 i = 0; i < set.length; i++) {
            if (set[i].key == bytes32(0)) revert ZeroValidatorKey();
            if (set[i].power == 0) revert ZeroVotingPower();
            for (uint256 j = 0; j < i; j++) {
                if (set[j].key == set[i].key) revert ValidatorExists(set[i].key);
            }
            e.validators.push(set[i]);
            keys[i] = set[i].key;
            powers[i] = set[i].power;
        }
        emit ValidatorSetChanged(e.effectiveHeight, keys, powers);
    }

    // ----- permissions and roles -----

    /// Whether `account` may send transactions to the network.
    function isPermitted(address account) public view returns (bool) {
        return _permitted[account];
    }

    /// Adds `account` to, or removes it from, the permission list.
    function setPermitted(address account, bool permitted) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (account == address(0)) revert ZeroAddress();
        // A member that could not send transactions could not approve: remove it instead.
        if (!permitted && _isCouncil[account]) revert CouncilMemberStaysPermitted(account);
        _removed[account] = !permitted;
        _setPermitted(account, permitted);
    }

    /// Grants HOSPITAL to `hospital` (and permits it).
    function registerHospital(address hospital) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _registerHospital(hospital);
    }

    /// Makes operator account `custodian` a share custodian with X25519 key `custodyKey`: it is
    /// granted CUSTODIAN (and permitted), and the key of every record made from now on is split
    /// to it too, as the next custodian index. Records made before keep their custodians.
    /// Revoking CUSTODIAN later leaves its index in place but splits no new key to it.
    function addCustodian(address custodian, bytes32 custodyKey) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (custodyKey == bytes32(0)) revert ZeroCustodyKey();
        _addCustodian(custodian, custodyKey);
    }

    /// Sets the gas limits from the next block on. The transaction limit stays at least
    /// `MIN_TX_GAS_LIMIT` (enough for any governance transaction, so that the council can
    /// always change them again) and the block limit between it and `MAX_BLOCK_GAS_LIMIT`.
    /// Governed.
    function setGasLimits(uint64 blockGasLimit, uint64 txGasLimit) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (txGasLimit < MIN_TX_GAS_LIMIT || blockGasLimit < txGasLimit || blockGasLimit > MAX_BLOCK_GAS_LIMIT) {
            revert BadGasLimits(blockGasLimit, txGasLimit);
        }
        _gasLimits = (uint256(blockGasLimit) << 64) | txGasLimit;
        emit GasLimitsSet(blockGasLimit, txGasLimit);
    }

    /// The gas limits the next block is executed with.
    function gasLimits() external view returns (uint64 blockGasLimit, uint64 txGasLimit) {
        return (uint64(_gasLimits >> 64), uint64(_gasLimits));
    }

    /// Every share custodian by index (entry i is custodian i + 1 of share envelopes), and
    /// whether each still holds CUSTODIAN (only those receive shares of new records).
    function shareCustodians() external view returns (ShareCustodian[] memory list, bool[] memory active) {
        list = _shareCustodians;
        active = new bool[](list.length);
        for (uint256 i = 0; i < list.length; i++) {
            active[i] = hasRole(CUSTODIAN_ROLE, list[i].operator);
        }
    }

    function _registerHospital(address hospital) private {
        if (hospital == address(0)) revert ZeroAddress();
        _grantRole(HOSPITAL_ROLE, hospital);
        emit HospitalRegistered(hospital, _msgSender());
    }

    /// A `custodyKey` of zero grants the role only (an operator that holds no shares).
    function _addCustodian(address custodian, bytes32 custodyKey) private {
        if (custodian == address(0)) revert ZeroAddress();
        if (custodyKey != bytes32(0)) {
            for (uint256 i = 0; i < _shareCustodians.length; i++) {
                if (_shareCustodians[i].operator == custodian || _shareCustodians[i].custodyKey == custodyKey) {
                    revert CustodianExists(custodian);
                }
            }
            _shareCustodians.push(ShareCustodian(custodian, custodyKey));
        }
        _grantRole(CUSTODIAN_ROLE, custodian);
        emit CustodianAdded(custodian, _msgSender());
    }

    function _setPermitted(address account, bool permitted) private {
        if (_permitted[account] != permitted) {
            _permitted[account] = permitted;
            emit PermissionSet(account, permitted, _msgSender());
        }
    }

    /// Every account granted a role is put on the permission list; HOSPITAL is mirrored into the
    /// account word the mint path reads.
    function _grantRole(bytes32 role, address account) internal override returns (bool) {
        if (role == DEFAULT_ADMIN_ROLE) revert AdminIsTheCouncil();
        bool granted = super._grantRole(role, account);
        if (granted) {
            if (role == HOSPITAL_ROLE) {
                _account(account).hospital = true;
            }
            // Granting a role is the admin permitting the account again.
            _removed[account] = false;
            _setPermitted(account, true);
        }
        return granted;
    }

    /// Revoking (or renouncing) HOSPITAL clears the mirrored flag: the account mints no more.
    function _revokeRole(bytes32 role, address account) internal override returns (bool) {
        bool revoked = super._revokeRole(role, account);
        if (revoked && role == HOSPITAL_ROLE) {
            _account(account).hospital = false;
        }
        return revoked;
    }

    /// `hasRole(HOSPITAL_ROLE, account)`, from the account word (one storage key, not two).
    function _isHospital(address account) private view returns (bool) {
        return _account(account).hospital;
    }

    // ----- patients and keys -----

    /// Registers a patient by address, pseudonym commitment, X25519 public key and stealth
    /// meta-address, with the patient's own signature over all four (`encryptionKeyDigest`);
    /// permits it. A hospital cannot register an account that did not sign, nor one the admin
    /// removed, nor set anyone's keys.
    function registerPatient(
        address patient,
        bytes32 pseudonymCommitment,
        bytes32 encryptionKey,
        bytes calldata stealthMetaAddress,
        bytes calldata signature
    ) external onlyRole(HOSPITAL_ROLE) {
        if (patient == address(0)) revert ZeroAddress();
        if (pseudonymCommitment == bytes32(0)) revert ZeroPseudonymCommitment();
        if (encryptionKey == bytes32(0)) revert ZeroEncryptionKey();
        if (_pseudonymCommitments[patient] != bytes32(0)) revert PatientAlreadyRegistered(patient);
        if (_removed[patient]) revert AccountRemoved(patient);
        _checkMetaAddress(stealthMetaAddress);
        _checkKeySignature(patient, encryptionKey, pseudonymCommitment, keccak256(stealthMetaAddress), signature);
        _pseudonymCommitments[patient] = pseudonymCommitment;
        _metaAddresses[patient] = stealthMetaAddress;
        _account(patient).patient = true;
        _encryptionKeys[patient] = encryptionKey;
        _keySignatures[patient] = signature;
        _setPermitted(patient, true);
        emit PatientRegistered(patient, _msgSender(), pseudonymCommitment, encryptionKey, stealthMetaAddress);
        emit EncryptionKeySet(patient, encryptionKey);
    }

    function _checkMetaAddress(bytes calldata meta) private pure {
        if (
            meta.length != META_ADDRESS_BYTES || (meta[0] != 0x02 && meta[0] != 0x03)
                || (meta[33] != 0x02 && meta[33] != 0x03)
        ) revert BadStealthMetaAddress();
    }

    /// A patient's stealth meta-address (empty for an account that is not a patient): what a
    /// hospital derives each record's one-time owner from.
    function stealthMetaAddressOf(address patient) external view returns (bytes memory) {
        return _metaAddresses[patient];
    }

    /// `keccak256` of an account's meta-address, zero when it has none.
    function _metaAddressHash(address account) private view returns (bytes32) {
        bytes storage meta = _metaAddresses[account];
        return meta.length == 0 ? bytes32(0) : keccak256(meta);
    }

    function isPatient(address account) public view returns (bool) {
        return _account(account).patient;
    }

    function pseudonymCommitmentOf(address patient) external view returns (bytes32) {
        return _pseudonymCommitments[patient];
    }

    /// Sets the caller's X25519 public key (grantees register theirs before being granted),
    /// with the caller's signature over `encryptionKeyDigest(caller, key, its pseudonym
    /// commitment or zero, its meta-address hash or zero)`, kept for clients to check.
    function setEncryptionKey(bytes32 encryptionKey, bytes calldata signature) external {
        address account = _msgSender();
        if (!_permitted[account]) revert NotPermitted(account);
        if (encryptionKey == bytes32(0)) revert ZeroEncryptionKey();
        _checkKeySignature(
            account, encryptionKey, _pseudonymCommitments[account], _metaAddressHash(account), signature
        );
        _encryptionKeys[account] = encryptionKey;
        _keySignatures[account] = signature;
        emit EncryptionKeySet(account, encryptionKey);
    }

    function encryptionKeyOf(address account) external view returns (bytes32) {
        return _encryptionKeys[account];
    }

    /// An account's encryption key, its pseudonym commitment (zero if not a patient), its
    /// stealth meta-address (empty if not a patient) and its signature over all three (EIP-191
    /// over `encryptionKeyDigest`): a client recovers the signer and seals only to keys their
    /// owner signed, whatever node answered.
    function encryptionKeyAttestation(address account)
        external
        view
        returns (
            bytes32 encryptionKey,
            bytes32 pseudonymCommitment,
            bytes memory stealthMetaAddress,
            bytes memory signature
        )
    {
        return (
            _encryptionKeys[account],
            _pseudonymCommitments[account],
            _metaAddresses[account],
            _keySignatures[account]
        );
    }

    /// What `account` signs (as an EIP-191 message of these 32 bytes) to publish
    /// `encryptionKey`, with its pseudonym commitment and the hash of its stealth meta-address
    /// when it is or becomes a patient (zero otherwise).
    function encryptionKeyDigest(
        address account,
        bytes32 encryptionKey,
        bytes32 pseudonymCommitment,
        bytes32 metaAddressHash
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                KEY_DOMAIN, block.chainid, address(this), account, encryptionKey, pseudonymCommitment, metaAddressHash
            )
        );
    }

    function _checkKeySignature(
        address account,
        bytes32 encryptionKey,
        bytes32 pseudonymCommitment,
        bytes32 metaAddressHash,
        bytes calldata signature
    ) private view {
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(
            encryptionKeyDigest(account, encryptionKey, pseudonymCommitment, metaAddressHash)
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != account) revert BadKeySignature(account);
    }

    // ----- records -----

    /// Mints a record token to a one-time owner the hospital derived from the patient's
    /// stealth meta-address (`stealthMetaAddressOf`), announcing it. Hospitals only. The
    /// contract cannot tell whose one-time address `to.owner` is, and does not ask: that is the
    /// point.
    function mintRecord(OneTimeOwner calldata to, Cid calldata root, Cid calldata envelope, bytes32 keyCommitment)
        external
        returns (uint256 tokenId)
    {
        address hospital = _msgSender();
        if (!_isHospital(hospital)) revert AccessControlUnauthorizedAccount(hospital, HOSPITAL_ROLE);
        address owner = to.owner;
        if (owner == address(0)) revert ZeroAddress();
        if (to.ephemeralPrefix != 2 && to.ephemeralPrefix != 3) revert BadEphemeralKey(to.ephemeralPrefix);
        _checkVersion(root, envelope, keyCommitment);
        // A one-time owner is fresh: not a hospital, not a patient, owning nothing yet. Reusing
        // one would link two records in public, and would let an account already on (or taken
        // off) the permission list act through the owner's admission.
        Account storage account = _account(owner);
        if (account.hospital || account.patient || account.balance != 0) revert OwnerNotFresh(owner);
        account.balance = 1;
        tokenId = ++_lastTokenId;
        _storeNewRecord(_record(tokenId), to, root, envelope, hospital, keyCommitment);
        emit Transfer(address(0), owner, tokenId);
        emit Locked(tokenId);
        emit RecordMinted(
            tokenId, owner, to.ephemeralX, to.ephemeralPrefix, to.viewTag, to.sealedType, root, envelope, keyCommitment
        );
    }

    /// Appends a new version (re-keyed contents) of a record; by its minting hospital or patient.
    function appendVersion(uint256 tokenId, Cid calldata root, Cid calldata envelope, bytes32 keyCommitment)
        external
        returns (uint32 version)
    {
        address owner = _requireOwned(tokenId);
        Record storage r = _record(tokenId);
        address sender = _msgSender();
        bool isMinter = sender == r.hospital && _isHospital(sender);
        if (!isMinter && sender != owner) revert NotRecordEditor(tokenId, sender);
        _checkVersion(root, envelope, keyCommitment);
        version = r.versionCount;
        r.versionCount = version + 1;
        _versions[tokenId][version] = Version({
            rootDigest: root.digest,
            envelopeDigest: envelope.digest,
            keyCommitment: keyCommitment,
            rootCodec: root.codec,
            envelopeCodec: envelope.codec
        });
        emit RecordVersionAppended(tokenId, version, sender, root, envelope, keyCommitment);
    }

    /// Writes a fresh record: its six words whole, one SSTORE each. Assigning the struct field
    /// by field would read and re-write the packed first word once per field, for slots known
    /// to be empty. The first word is packed exactly as Solidity lays out `Record` (first
    /// member in the lowest-order bytes): owner (160 bits), versionCount (32, here 1),
    /// rootCodec (8), envelopeCodec (8), viewTag (8), ephemeralPrefix (8), sealedType (32); the
    /// tests read every field back through the struct.
    function _storeNewRecord(
        Record storage r,
        OneTimeOwner calldata to,
        Cid calldata root,
        Cid calldata envelope,
        address hospital,
        bytes32 keyCommitment
    ) private {
        uint256 head = uint256(uint160(to.owner)) | (uint256(1) << 160) | (uint256(root.codec) << 192)
            | (uint256(envelope.codec) << 200) | (uint256(to.viewTag) << 208)
            | (uint256(to.ephemeralPrefix) << 216) | (uint256(to.sealedType) << 224);
        bytes32 rootDigest = root.digest;
        bytes32 envelopeDigest = envelope.digest;
        bytes32 ephemeralX = to.ephemeralX;
        assembly ("memory-safe") {
            let slot := r.slot
            sstore(slot, head)
            sstore(add(slot, 1), hospital)
            sstore(add(slot, 2), rootDigest)
            sstore(add(slot, 3), envelopeDigest)
            sstore(add(slot, 4), keyCommitment)
            sstore(add(slot, 5), ephemeralX)
        }
    }

    function _checkVersion(Cid calldata root, Cid calldata envelope, bytes32 keyCommitment) private pure {
        if (root.codec >= 0x80) revert UnsupportedCodec(root.codec);
        if (envelope.codec >= 0x80) revert UnsupportedCodec(envelope.codec);
        if (keyCommitment == bytes32(0)) revert ZeroKeyCommitment();
    }

    /// Version `index` of a record, which must exist.
    function _versionAt(uint256 tokenId, uint256 index) private view returns (Version memory) {
        if (index == 0) {
            Record storage r = _record(tokenId);
            return Version({
                rootDigest: r.rootDigest,
                envelopeDigest: r.envelopeDigest,
                keyCommitment: r.keyCommitment,
                rootCodec: r.rootCodec,
                envelopeCodec: r.envelopeCodec
            });
        }
        return _versions[tokenId][index];
    }

    /// The 36 CID bytes of a stored codec and digest.
    function _cidBytes(uint8 codec, bytes32 digest) private pure returns (bytes memory) {
        return abi.encodePacked(bytes1(0x01), bytes1(codec), bytes2(0x1e20), digest);
    }

    /// One-time owner, minting hospital and number of versions of a record.
    function recordOf(uint256 tokenId) external view returns (address owner, address hospital, uint32 versions) {
        owner = _requireOwned(tokenId);
        Record storage r = _record(tokenId);
        return (owner, r.hospital, r.versionCount);
    }

    /// A record as a scan reads it: its announcement, minting hospital and version count.
    struct Announced {
        OneTimeOwner to;
        address hospital;
        uint32 versions;
    }

    /// Largest `count` `announcements` answers at once.
    uint256 public constant MAX_ANNOUNCEMENTS = 512;

    /// The records of tokens `from` to `from + count - 1` (those minted so far, at most
    /// `MAX_ANNOUNCEMENTS`; token 0 does not exist, so `from` 0 answers nothing): what a
    /// patient's viewing key scans for its records, with what a listing shows of them, so that
    /// listing asks the node about no token in particular.
    function announcements(uint256 from, uint256 count) external view returns (Announced[] memory out) {
        uint256 last = _lastTokenId;
        if (count > MAX_ANNOUNCEMENTS) count = MAX_ANNOUNCEMENTS;
        uint256 n = from == 0 || from > last ? 0 : last - from + 1;
        if (n > count) n = count;
        out = new Announced[](n);
        for (uint256 i = 0; i < n; i++) {
            Record storage r = _record(from + i);
            out[i] = Announced({
                to: OneTimeOwner({
                    owner: r.owner,
                    ephemeralX: r.ephemeralX,
                    ephemeralPrefix: r.ephemeralPrefix,
                    viewTag: r.viewTag,
                    sealedType: r.sealedType
                }),
                hospital: r.hospital,
                versions: r.versionCount
            });
        }
    }

    function versionCount(uint256 tokenId) external view returns (uint32) {
        _requireOwned(tokenId);
        return _record(tokenId).versionCount;
    }

    /// Version `index` (0 = as minted) of a record.
    function recordVersion(uint256 tokenId, uint256 index)
        external
        view
        returns (Cid memory root, Cid memory envelope, bytes32 keyCommitment)
    {
        _requireOwned(tokenId);
        uint256 count = _record(tokenId).versionCount;
        if (index >= count) revert VersionOutOfRange(tokenId, index, count);
        Version memory v = _versionAt(tokenId, index);
        return (Cid(v.rootCodec, v.rootDigest), Cid(v.envelopeCodec, v.envelopeDigest), v.keyCommitment);
    }

    /// Number of records minted so far (token ids are 1..=totalMinted).
    function totalMinted() external view returns (uint256) {
        return _lastTokenId;
    }

    /// `ipfs://` followed by the latest root CID in multibase base32 (lowercase, prefix `b`).
    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        _requireOwned(tokenId);
        uint256 latest = _record(tokenId).versionCount - 1;
        Version memory v = _versionAt(tokenId, latest);
        return string.concat("ipfs://", _base32(_cidBytes(v.rootCodec, v.rootDigest)));
    }

    function _base32(bytes memory data) private pure returns (string memory) {
        bytes memory alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        uint256 outLen = (data.length * 8 + 4) / 5;
        bytes memory out = new bytes(outLen + 1);
        out[0] = "b";
        uint256 buffer;
        uint256 bits;
        uint256 j = 1;
        for (uint256 i = 0; i < data.length; i++) {
            buffer = (buffer << 8) | uint8(data[i]);
            bits += 8;
            while (bits >= 5) {
                bits -= 5;
                out[j++] = alphabet[(buffer >> bits) & 31];
            }
        }
        if (bits > 0) {
            out[j] = alphabet[(buffer << (5 - bits)) & 31];
        }
        return string(out);
    }

    // ----- access grants -----

    /// Grants `grantee` access to a record until `expiry` (unix seconds), handing it the patient's
    /// essential share sealed to the grantee's registered encryption key. Token owner only.
    function grantAccess(uint256 tokenId, address grantee, uint64 expiry, bytes calldata sealedPatientShare)
        external
    {
        address owner = _requireOwned(tokenId);
        if (_msgSender() != owner) revert NotRecordOwner(tokenId, _msgSender());
        if (grantee == address(0)) revert ZeroAddress();
        if (_encryptionKeys[grantee] == bytes32(0)) revert GranteeHasNoEncryptionKey(grantee);
        if (expiry <= block.timestamp) revert ExpiryNotInFuture(expiry, block.timestamp);
        if (sealedPatientShare.length == 0) revert EmptySealedShare();
        if (sealedPatientShare.length > MAX_SEALED_SHARE_BYTES) {
            revert SealedShareTooLong(sealedPatientShare.length, MAX_SEALED_SHARE_BYTES);
        }
        uint32 version = _record(tokenId).versionCount - 1;
        _grants[tokenId][grantee] =
            Grant({expiry: expiry, revoked: false, version: version, sealedShare: sealedPatientShare});
        emit AccessGranted(tokenId, grantee, expiry, version, sealedPatientShare);
    }

    /// Revokes a grant; custodians stop releasing shares for it. Token owner only.
    function revokeAccess(uint256 tokenId, address grantee) external {
        address owner = _requireOwned(tokenId);
        if (_msgSender() != owner) revert NotRecordOwner(tokenId, _msgSender());
        Grant storage g = _grants[tokenId][grantee];
        if (g.expiry == 0) revert NoGrant(tokenId, grantee);
        g.revoked = true;
        emit AccessRevoked(tokenId, grantee);
    }

    /// Whether `grantee` may have the record's key shares released now: the owner always may;
    /// anyone else needs a grant that is not revoked and not expired (by block timestamp).
    function hasAccess(uint256 tokenId, address grantee) public view returns (bool) {
        address owner = _ownerOf(tokenId);
        if (owner == address(0)) return false;
        if (grantee == owner) return true;
        Grant storage g = _grants[tokenId][grantee];
        return g.expiry != 0 && !g.revoked && block.timestamp < g.expiry;
    }

    /// The grant of `grantee` on a record (all zero when there is none).
    function grantOf(uint256 tokenId, address grantee)
        external
        view
        returns (uint64 expiry, bool revoked, uint32 version, bytes memory sealedShare)
    {
        Grant storage g = _grants[tokenId][grantee];
        return (g.expiry, g.revoked, g.version, g.sealedShare);
    }

    /// Audit log: a custodian released its share of a record to a grantee with a live grant.
    function logShareRelease(uint256 tokenId, address grantee, bytes32 challengeHash)
        external
        onlyRole(CUSTODIAN_ROLE)
    {
        if (!hasAccess(tokenId, grantee)) revert NoLiveGrant(tokenId, grantee);
        address owner = _ownerOf(tokenId);
        uint32 version =
            grantee == owner ? _record(tokenId).versionCount - 1 : _grants[tokenId][grantee].version;
        emit ShareReleased(tokenId, grantee, _msgSender(), version, challengeHash);
    }

    // ----- ownership and non-transferability (ERC-5192) -----

    /// ERC-5192: every record is locked to its one-time owner.
    function locked(uint256 tokenId) external view returns (bool) {
        _requireOwned(tokenId);
        return true;
    }

    /// A record's owner is the one-time address it was minted to (zero for a token that does not
    /// exist).
    function _ownerOf(uint256 tokenId) internal view override returns (address) {
        if (tokenId == 0 || tokenId > _lastTokenId) return address(0);
        return _record(tokenId).owner;
    }

    function balanceOf(address owner) public view override returns (uint256) {
        if (owner == address(0)) revert ERC721InvalidOwner(address(0));
        return _account(owner).balance;
    }

    /// Every transfer, burn and mint entry point of OpenZeppelin's ERC-721 passes through here,
    /// and `mintRecord` does not: records never move. The one case that does not revert here,
    /// "burning" a token that does not exist, changes nothing and is refused by its caller as
    /// `ERC721NonexistentToken` (and nothing in PMR burns).
    function _update(address to, uint256 tokenId, address) internal view override returns (address) {
        if (to != address(0) || _ownerOf(tokenId) != address(0)) revert RecordNotTransferable(tokenId);
        return address(0);
    }

    /// Unused (balances change only in `mintRecord`); kept consistent with `balanceOf`.
    function _increaseBalance(address account, uint128 value) internal override {
        _account(account).balance += SafeCast.toUint64(value);
    }

    function approve(address, uint256) public pure override {
        revert ApprovalsDisabled();
    }

    function setApprovalForAll(address, bool) public pure override {
        revert ApprovalsDisabled();
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC721, AccessControl) returns (bool) {
        return interfaceId == ERC5192_INTERFACE_ID || super.supportsInterface(interfaceId);
    }
}
