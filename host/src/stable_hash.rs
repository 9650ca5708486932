//! FNV-1a, 64 bit: a hash stable across Rust releases and platforms, unlike
//! std's `DefaultHasher`. What it decides must never move: an account's
//! shard (`stores::sharded`) and its rollout cohort (`app::migration`).

pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
