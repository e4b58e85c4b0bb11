// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @title PlainMint: a benchmark reference, never deployed on a PMR network.
/// @notice The plain OpenZeppelin v5 mint (owner, balance, Transfer event) that the execution
/// benchmark runs beside PMR's `mintRecord`, to compare this machine with the reference figure
/// of such a mint in bare revm.
contract PlainMint is ERC721 {
    uint256 private _lastTokenId;

    constructor() ERC721("Plain mint", "PLAIN") {}

    function mint(address to) external returns (uint256 tokenId) {
        tokenId = ++_lastTokenId;
        _mint(to, tokenId);
    }
}
