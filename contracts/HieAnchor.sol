// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title HieAnchor: the consortium's registry of facilities and their Merkle log anchors.
/// @notice Each member facility anchors the root of its RFC 9162 log at growing tree sizes.
/// A consortium admin key registers facilities (a facility id and the account allowed to
/// anchor for it). Anchors are readable by facility and tree size; a shrinking tree size,
/// a different root for an anchored size, and an account that is not a member are refused.
/// @dev Facility ids are keccak256 of the UTF-8 facility id string (e.g. "general-hospital").
contract HieAnchor {
    struct Head {
        uint64 treeSize;
        uint64 anchoredAt; // block timestamp of the latest anchor
        bytes32 root;
    }

    address public admin;
    mapping(address => bytes32) public facilityOf; // account => facility id (0: none)
    mapping(bytes32 => address) public accountOf; // facility id => account (0: none)
    mapping(bytes32 => Head) private heads;
    mapping(bytes32 => mapping(uint64 => bytes32)) private roots;

    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);
    event FacilityAdded(bytes32 indexed facility, address indexed account, string name);
    event FacilityRemoved(bytes32 indexed facility, address indexed account);
    event Anchored(bytes32 indexed facility, uint64 indexed treeSize, bytes32 root);

    error NotAdmin();
    error NotMember(address account);
    error ZeroValue();
    error AlreadyRegistered();
    error UnknownFacility();
    error TreeShrank(uint64 latestSize, uint64 givenSize);
    error RootConflict(uint64 treeSize);

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin();
        _;
    }

    constructor() {
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
    }

    function transferAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroValue();
        emit AdminTransferred(admin, newAdmin);
        admin = newAdmin;
    }

    /// @notice Register a facility and the account that anchors for it.
    function addFacility(bytes32 facility, address account, string calldata name)
        external
        onlyAdmin
    {
        if (facility == bytes32(0) || account == address(0)) revert ZeroValue();
        if (accountOf[facility] != address(0) || facilityOf[account] != bytes32(0)) {
            revert AlreadyRegistered();
        }
        accountOf[facility] = account;
        facilityOf[account] = facility;
        emit FacilityAdded(facility, account, name);
    }

    /// @notice Withdraw a facility's right to anchor; its past anchors stay readable.
    function removeFacility(bytes32 facility) external onlyAdmin {
        address account = accountOf[facility];
        if (account == address(0)) revert UnknownFacility();
        delete accountOf[facility];
        delete facilityOf[account];
        emit FacilityRemoved(facility, account);
    }

    /// @notice Anchor the root of the sender's facility log at `treeSize` leaves.
    /// Re-anchoring the latest size with the same root is a no-op, so retries are safe.
    function anchor(uint64 treeSize, bytes32 root) external {
        bytes32 facility = facilityOf[msg.sender];
        if (facility == bytes32(0)) revert NotMember(msg.sender);
        if (treeSize == 0) revert ZeroValue();
        Head storage head = heads[facility];
        uint64 latestSize = head.treeSize;
        if (treeSize < latestSize) revert TreeShrank(latestSize, treeSize);
        if (treeSize == latestSize) {
            if (head.root != root) revert RootConflict(treeSize);
            return;
        }
        roots[facility][treeSize] = root;
        head.treeSize = treeSize;
        head.anchoredAt = uint64(block.timestamp);
        head.root = root;
        emit Anchored(facility, treeSize, root);
    }

    /// @notice The latest anchor of a facility (all zero when none).
    function latest(bytes32 facility)
        external
        view
        returns (uint64 treeSize, bytes32 root, uint64 anchoredAt)
    {
        Head storage head = heads[facility];
        return (head.treeSize, head.root, head.anchoredAt);
    }

    /// @notice The root a facility anchored at exactly `treeSize` (zero when none).
    function rootAt(bytes32 facility, uint64 treeSize) external view returns (bytes32) {
        return roots[facility][treeSize];
    }
}
