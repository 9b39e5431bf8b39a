//! The vault's public contract, including hostile inputs: every failure is a typed error, never
//! a panic, and nothing secret ever shows up in output.

use gig_vault::{
    Aad, CHECK_VALUE_LEN, KeyId, MIN_CIPHERTEXT_LEN, MasterKey, Sealed, Vault, VaultError,
    WRAPPED_DEK_LEN,
};

/// 00 01 02 .. 1f
const FIXED_MASTER_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const ROW: Aad<'static> = Aad {
    secret_id: "sec_1",
    owner: "team-a",
    name: "GITHUB_TOKEN",
};
/// 32 recognizable bytes, so a leak into any output is easy to spot.
const PLAINTEXT: &[u8; 32] = b"ghp_THIS-IS-THE-SECRET-VALUE-123";

fn vault() -> Vault {
    Vault::new(&MasterKey::generate())
}

fn corrupt(field: &'static str) -> VaultError {
    VaultError::Corrupt { field }
}

/// xorshift64*: deterministic, so a failing garbage input can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn round_trip() {
    let vault = vault();
    for plaintext in [&b""[..], b"x", PLAINTEXT, &[0xff; 4096]] {
        let sealed = vault.seal(&ROW, plaintext);
        assert_eq!(sealed.key_id, *vault.key_id());
        assert_eq!(sealed.wrapped_dek.len(), WRAPPED_DEK_LEN);
        assert_eq!(
            sealed.ciphertext.len(),
            MIN_CIPHERTEXT_LEN + plaintext.len()
        );
        assert_eq!(vault.open(&ROW, &sealed).unwrap().expose(), plaintext);
    }
    let opened = vault
        .open(&ROW, &vault.seal(&ROW, "pässwörd".as_bytes()))
        .unwrap();
    assert_eq!(opened.expose_str(), Ok("pässwörd"));
    let opened = vault.open(&ROW, &vault.seal(&ROW, &[0xff, 0xfe])).unwrap();
    assert_eq!(opened.expose_str(), Err(VaultError::NotUtf8));
}

#[test]
fn every_seal_uses_fresh_keys_and_nonces() {
    let vault = vault();
    let (a, b) = (vault.seal(&ROW, PLAINTEXT), vault.seal(&ROW, PLAINTEXT));
    assert_ne!(a.wrapped_dek, b.wrapped_dek);
    assert_ne!(a.ciphertext, b.ciphertext);
    assert_ne!(
        a.ciphertext[..24],
        b.ciphertext[..24],
        "value nonces repeat"
    );
    assert_ne!(
        a.wrapped_dek[..24],
        b.wrapped_dek[..24],
        "wrap nonces repeat"
    );
}

#[test]
fn changing_any_aad_field_is_corrupt() {
    let vault = vault();
    let sealed = vault.seal(&ROW, PLAINTEXT);
    for other in [
        Aad {
            secret_id: "sec_2",
            ..ROW
        },
        Aad {
            owner: "team-b",
            ..ROW
        },
        Aad {
            name: "GITLAB_TOKEN",
            ..ROW
        },
        // Same concatenated bytes, different field boundaries.
        Aad {
            secret_id: "sec_1team-a",
            owner: "",
            ..ROW
        },
    ] {
        assert_eq!(
            vault.open(&other, &sealed).unwrap_err(),
            corrupt("wrapped_dek"),
            "{other:?}"
        );
    }
}

#[test]
fn ciphertext_moved_to_another_row_is_corrupt() {
    let vault = vault();
    let row_b = Aad {
        secret_id: "sec_2",
        ..ROW
    };
    let a = vault.seal(&ROW, PLAINTEXT);
    let b = vault.seal(&row_b, b"row b's own secret");
    // The whole record of A copied onto row B.
    assert_eq!(vault.open(&row_b, &a).unwrap_err(), corrupt("wrapped_dek"));
    // Only A's value spliced under B's (valid) wrap: B's DEK cannot authenticate it.
    let spliced = Sealed {
        ciphertext: a.ciphertext.clone(),
        ..b.clone()
    };
    assert_eq!(
        vault.open(&row_b, &spliced).unwrap_err(),
        corrupt("ciphertext")
    );
    // Only A's wrap moved onto row B.
    let spliced = Sealed {
        wrapped_dek: a.wrapped_dek.clone(),
        ..b
    };
    assert_eq!(
        vault.open(&row_b, &spliced).unwrap_err(),
        corrupt("wrapped_dek")
    );
}

#[test]
fn a_bit_flip_anywhere_is_corrupt() {
    let vault = vault();
    let sealed = vault.seal(&ROW, PLAINTEXT);
    for bit in 0..sealed.wrapped_dek.len() * 8 {
        let mut bad = sealed.clone();
        bad.wrapped_dek[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            vault.open(&ROW, &bad).unwrap_err(),
            corrupt("wrapped_dek"),
            "bit {bit}"
        );
    }
    for bit in 0..sealed.ciphertext.len() * 8 {
        let mut bad = sealed.clone();
        bad.ciphertext[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            vault.open(&ROW, &bad).unwrap_err(),
            corrupt("ciphertext"),
            "bit {bit}"
        );
    }
}

#[test]
fn truncating_a_field_at_every_length_never_panics() {
    let vault = vault();
    let sealed = vault.seal(&ROW, PLAINTEXT);
    for len in 0..sealed.wrapped_dek.len() {
        let bad = Sealed {
            wrapped_dek: sealed.wrapped_dek[..len].to_vec(),
            ..sealed.clone()
        };
        let expected = VaultError::Truncated {
            field: "wrapped_dek",
            len,
            min: WRAPPED_DEK_LEN,
        };
        assert_eq!(vault.open(&ROW, &bad).unwrap_err(), expected);
    }
    for len in 0..sealed.ciphertext.len() {
        let bad = Sealed {
            ciphertext: sealed.ciphertext[..len].to_vec(),
            ..sealed.clone()
        };
        let expected = if len < MIN_CIPHERTEXT_LEN {
            VaultError::Truncated {
                field: "ciphertext",
                len,
                min: MIN_CIPHERTEXT_LEN,
            }
        } else {
            // Long enough to hold a nonce and tag: only authentication can tell it was cut.
            corrupt("ciphertext")
        };
        assert_eq!(vault.open(&ROW, &bad).unwrap_err(), expected, "len {len}");
    }
    // Appending is caught too.
    let mut longer = sealed.clone();
    longer.wrapped_dek.push(0);
    assert_eq!(
        vault.open(&ROW, &longer).unwrap_err(),
        corrupt("wrapped_dek")
    );
}

#[test]
fn truncating_the_blob_at_every_length_is_malformed() {
    let blob = vault().seal(&ROW, PLAINTEXT).to_bytes();
    for len in 0..blob.len() {
        assert!(
            matches!(
                Sealed::from_bytes(&blob[..len]),
                Err(VaultError::Malformed { .. })
            ),
            "len {len}"
        );
    }
}

#[test]
fn wrong_master_key_is_wrong_key_and_fails_the_check_value() {
    let (right, wrong) = (vault(), vault());
    let sealed = right.seal(&ROW, PLAINTEXT);
    assert_eq!(
        wrong.open(&ROW, &sealed).unwrap_err(),
        VaultError::WrongKey {
            expected: *wrong.key_id(),
            found: *right.key_id()
        }
    );
    // A record relabelled with the wrong vault's key id still cannot be opened by it.
    let relabelled = Sealed {
        key_id: *wrong.key_id(),
        ..sealed
    };
    assert_eq!(
        wrong.open(&ROW, &relabelled).unwrap_err(),
        corrupt("wrapped_dek")
    );

    let kcv = right.check_value();
    assert_eq!(kcv.len(), CHECK_VALUE_LEN);
    assert_eq!(right.verify_check_value(&kcv), Ok(()));
    assert_eq!(
        wrong.verify_check_value(&kcv),
        Err(VaultError::WrongMasterKey)
    );
    assert_eq!(
        right.verify_check_value(&kcv[..31]),
        Err(VaultError::WrongMasterKey)
    );
    assert_eq!(
        right.verify_check_value(&[]),
        Err(VaultError::WrongMasterKey)
    );
}

#[test]
fn derivation_matches_an_independent_hkdf() {
    // Expected values computed outside this crate with Python's hmac/hashlib (RFC 5869 by hand).
    let vault = Vault::new(&MasterKey::from_hex(FIXED_MASTER_HEX).unwrap());
    assert_eq!(vault.key_id().to_string(), "332f5bc0723c7f86");
    assert_eq!(
        hex::encode(vault.check_value()),
        "4f44c3e683f5989f86568e753e6e995856fbcbe54ebaf48e2bea57d0a0cbeed5"
    );
    // Deterministic, and case-insensitive input.
    let upper = Vault::new(&MasterKey::from_hex(&FIXED_MASTER_HEX.to_uppercase()).unwrap());
    assert_eq!(upper.key_id(), vault.key_id());
    assert_eq!(upper.check_value(), vault.check_value());
}

#[test]
fn records_sealed_by_earlier_builds_still_open() {
    // Pins the wire format: a blob sealed once under FIXED_MASTER_HEX and ROW, and opened by an
    // independent Python implementation (HChaCha20 by hand + ChaCha20-Poly1305) of the crate doc.
    let vault = Vault::new(&MasterKey::from_hex(FIXED_MASTER_HEX).unwrap());
    let sealed = Sealed::from_bytes(&hex::decode(PINNED_BLOB).unwrap()).unwrap();
    assert_eq!(vault.open(&ROW, &sealed).unwrap().expose(), PLAINTEXT);
}
const PINNED_BLOB: &str = concat!(
    "01332f5bc0723c7f86000000480acb3aedf1f6d5d92bd5380a6633f6b05d63a7098977847d9d2a31",
    "11a3ea9ef80283ec52b2d1d22e70dfb54028a40fd3193c0ff6c2a490a9c5f482b2dad22f9d209f5b",
    "b0845dc6780000004808eb6bec25c93d4e027fd6e72c992181f2d5be270ad8e04cc13bbe38f95a56",
    "963be054dcfa30eb7dc7f097174e5b435950b9d55ccf73e81641f31dafd3b49ddaa1ce8666541af9",
    "0c",
);

#[test]
fn rewrap_moves_a_record_to_the_new_key() {
    let (old, new) = (vault(), vault());
    let sealed = old.seal(&ROW, PLAINTEXT);
    let rewrapped = new.rewrap(&old, &ROW, &sealed).unwrap();
    assert_eq!(rewrapped.key_id, *new.key_id());
    assert_eq!(
        rewrapped.ciphertext, sealed.ciphertext,
        "value ciphertext must be untouched"
    );
    assert_ne!(rewrapped.wrapped_dek, sealed.wrapped_dek);
    assert_eq!(new.open(&ROW, &rewrapped).unwrap().expose(), PLAINTEXT);
    assert_eq!(
        old.open(&ROW, &rewrapped).unwrap_err(),
        VaultError::WrongKey {
            expected: *old.key_id(),
            found: *new.key_id()
        }
    );
    // The rewrap is bound to the row just like the original.
    let other_row = Aad {
        owner: "team-b",
        ..ROW
    };
    assert_eq!(
        new.open(&other_row, &rewrapped).unwrap_err(),
        corrupt("wrapped_dek")
    );
}

#[test]
fn rewrap_is_idempotent_and_checks_its_inputs() {
    let (old, new, stranger) = (vault(), vault(), vault());
    let sealed = old.seal(&ROW, PLAINTEXT);
    let once = new.rewrap(&old, &ROW, &sealed).unwrap();
    // Resuming an interrupted rotation: already-moved records come back byte-identical.
    assert_eq!(new.rewrap(&old, &ROW, &once).unwrap(), once);
    assert_eq!(new.rewrap(&stranger, &ROW, &once).unwrap(), once);
    // ...but only if they really belong to this key and row.
    let wrong_row = Aad {
        name: "OTHER",
        ..ROW
    };
    assert_eq!(
        new.rewrap(&old, &wrong_row, &once).unwrap_err(),
        corrupt("wrapped_dek")
    );
    // The old vault must be the one that wrapped the record.
    assert_eq!(
        new.rewrap(&stranger, &ROW, &sealed).unwrap_err(),
        VaultError::WrongKey {
            expected: *stranger.key_id(),
            found: *old.key_id()
        }
    );
    assert_eq!(
        new.rewrap(&old, &wrong_row, &sealed).unwrap_err(),
        corrupt("wrapped_dek")
    );
}

#[test]
fn blob_round_trips() {
    let vault = vault();
    for plaintext in [&b""[..], PLAINTEXT] {
        let sealed = vault.seal(&ROW, plaintext);
        let blob = sealed.to_bytes();
        assert_eq!(blob[0], 1, "version byte");
        assert_eq!(Sealed::from_bytes(&blob).unwrap(), sealed);
    }
    // Structure only: odd field lengths still round-trip (open() judges them later).
    let odd = Sealed {
        key_id: KeyId::from_bytes([7; 8]),
        wrapped_dek: vec![],
        ciphertext: vec![1],
    };
    assert_eq!(Sealed::from_bytes(&odd.to_bytes()).unwrap(), odd);
}

#[test]
fn blob_rejects_other_versions_and_trailing_bytes() {
    let blob = vault().seal(&ROW, PLAINTEXT).to_bytes();
    let malformed = |reason| Err(VaultError::Malformed { reason });
    for version in [0u8, 2, 0xff] {
        let mut bad = blob.clone();
        bad[0] = version;
        assert_eq!(Sealed::from_bytes(&bad), malformed("unsupported version"));
    }
    let mut long = blob.clone();
    long.push(0);
    assert_eq!(
        Sealed::from_bytes(&long),
        malformed("trailing bytes after the ciphertext")
    );
    // A length prefix claiming more than is there.
    let mut lying = blob;
    lying[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        Sealed::from_bytes(&lying),
        malformed("ends inside wrapped_dek")
    );
}

#[test]
fn garbage_never_panics() {
    let vault = vault();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = vault.seal(&ROW, PLAINTEXT).to_bytes();
    let (mut parsed, mut tried) = (0, 0);
    for round in 0..2_000 {
        let input = if round % 2 == 0 {
            // A real blob with a few bytes changed gets past the parser into open() and
            // rewrap(), which pure noise almost never does.
            let mut input = valid.clone();
            for _ in 0..1 + rng.next() % 3 {
                let at = (rng.next() % input.len() as u64) as usize;
                input[at] ^= 1 | rng.next() as u8;
            }
            input
        } else {
            let len = (rng.next() % 200) as usize;
            rng.bytes(len)
        };
        for end in 0..=input.len() {
            tried += 1;
            let Ok(sealed) = Sealed::from_bytes(&input[..end]) else {
                continue;
            };
            parsed += 1;
            assert_eq!(
                sealed.to_bytes(),
                &input[..end],
                "accepted a non-canonical blob"
            );
            assert!(vault.open(&ROW, &sealed).is_err(), "round {round}");
            // rewrap vouches for the wrap only, so a damaged value may pass through unchanged.
            if let Ok(same) = vault.rewrap(&vault, &ROW, &sealed) {
                assert_eq!(same, sealed);
            }
        }
    }
    // Keeps the test honest: a good share of inputs must reach the crypto.
    assert!(parsed > 500, "only {parsed} of {tried} inputs parsed");
}

#[test]
fn master_key_parsing_never_echoes_the_input() {
    let too_short = &FIXED_MASTER_HEX[..62];
    let not_hex = format!("{}zz", &FIXED_MASTER_HEX[..62]);
    let too_long = format!("{FIXED_MASTER_HEX}00");
    for bad in [
        too_short,
        &not_hex,
        &too_long,
        "",
        " ",
        &format!(" {}", &FIXED_MASTER_HEX[1..]),
    ] {
        let err = MasterKey::from_hex(bad).unwrap_err();
        assert!(
            matches!(err, VaultError::InvalidMasterKey { .. }),
            "{bad:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("0102030405") && !shown.contains("1e1f"),
            "{shown}"
        );
        assert!(!shown.contains("zz"), "{shown}");
    }
    // Multi-byte UTF-8 of the right byte length must not panic the decoder.
    assert!(MasterKey::from_hex(&"é".repeat(32)).is_err());
}

#[test]
fn constant_byte_master_keys_are_refused() {
    for byte in [0x00u8, 0x11, 0x22, 0xff, 0xab] {
        for hex in [
            format!("{byte:02x}").repeat(32),
            format!("{byte:02X}").repeat(32),
        ] {
            let err = MasterKey::from_hex(&hex).unwrap_err();
            assert!(
                matches!(err, VaultError::InvalidMasterKey { .. }),
                "{hex}: {err}"
            );
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&hex[..8]), "{shown}");
        }
    }
    // One byte different is a (poor, but not constant) key: parsing is not a strength meter.
    let mut almost = "00".repeat(31);
    almost.push_str("01");
    assert!(MasterKey::from_hex(&almost).is_ok());
}

#[test]
fn generated_keys_round_trip_through_hex() {
    use secrecy::ExposeSecret;
    let key = MasterKey::generate();
    let hex = key.to_hex();
    assert_eq!(hex.expose_secret().len(), 64);
    let again = MasterKey::from_hex(hex.expose_secret()).unwrap();
    assert_eq!(Vault::new(&again).key_id(), Vault::new(&key).key_id());
    assert_ne!(
        Vault::new(&MasterKey::generate()).key_id(),
        Vault::new(&key).key_id()
    );
}

#[test]
fn key_id_parses_what_it_displays() {
    let id = *vault().key_id();
    let shown = id.to_string();
    assert_eq!(shown.len(), 16);
    assert_eq!(shown.parse::<KeyId>(), Ok(id));
    assert_eq!(format!("{id:?}"), format!("KeyId({shown})"));
    assert_eq!(KeyId::from_bytes(*id.as_bytes()), id);
    for bad in ["", "00", "zz2f5bc0723c7f86", "332f5bc0723c7f8600"] {
        assert!(
            matches!(bad.parse::<KeyId>(), Err(VaultError::InvalidKeyId { .. })),
            "{bad}"
        );
    }
}

#[test]
fn debug_output_never_shows_key_or_secret_bytes() {
    let master = MasterKey::from_hex(FIXED_MASTER_HEX).unwrap();
    let vault = Vault::new(&master);
    let opened = vault.open(&ROW, &vault.seal(&ROW, PLAINTEXT)).unwrap();
    assert_eq!(format!("{master:?}"), "MasterKey([REDACTED])");
    assert_eq!(format!("{opened:?}"), "SecretBytes([REDACTED])");
    assert_eq!(
        format!("{vault:?}"),
        format!("Vault {{ key_id: {:?}, .. }}", vault.key_id())
    );
    assert_eq!(format!("{:#?}", master), "MasterKey([REDACTED])");
    let all = format!("{master:?}{opened:?}{vault:?}{vault:#?}");
    assert!(!all.contains("0001020304"));
    assert!(!all.contains("ghp_"));
}

#[test]
fn sealed_bytes_and_errors_never_contain_the_plaintext() {
    let vault = vault();
    let sealed = vault.seal(&ROW, PLAINTEXT);
    for bytes in [&sealed.to_bytes(), &sealed.ciphertext, &sealed.wrapped_dek] {
        // Any 8-byte window of the plaintext would be a leak, not just the whole of it.
        assert!(!PLAINTEXT.windows(8).any(|w| contains(bytes, w)));
    }
    assert!(!format!("{sealed:?}").contains("ghp_"));
    let mut bad = sealed;
    bad.ciphertext[30] ^= 1;
    let err = vault.open(&ROW, &bad).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("ghp_"));
}
