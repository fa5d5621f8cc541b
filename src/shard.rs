//! Zarr v3 `sharding_indexed` objects, assembled here rather than by zarrs's sharding encoder so
//! that a shard's bytes depend only on its content: inner chunks in C order, then the index
//! ((offset, length) per inner chunk, 2⁶⁴−1 for an absent one) encoded with the index codecs
//! (little-endian bytes, CRC32C). zarrs's encoder places inner chunks in the order its parallel
//! encodes finish, so two processes computing the same shard would write different bytes. Used by
//! both collections (Sentinel-2 `data` shards, Sentinel-1 shard regions).

use std::num::NonZeroU64;
use std::sync::Arc;

use anyhow::Result;
use serde_json::{json, Value};
use zarrs::array::{Array, ArrayBytes, ArrayToBytesCodecTraits, CodecOptions};
use zarrs::storage::store::MemoryStore;

use crate::zarr_json::array_from_json;

/// The shard index codecs (the Zarr v3 spec's default: little-endian with a CRC32C).
pub fn index_codecs() -> Value {
    json!([{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}])
}

/// Encodes one chunk of `array` (its whole chunk shape, C order, native little-endian bytes)
/// with the array's codec chain.
pub fn encode_with(array: &Array<MemoryStore>, bytes: &[u8]) -> Result<Vec<u8>> {
    let shape: Vec<NonZeroU64> = array
        .chunk_shape(&vec![0; array.dimensionality()])?
        .to_vec();
    Ok(array
        .codecs()
        .encode(
            ArrayBytes::new_flen(bytes),
            &shape,
            array.data_type(),
            array.fill_value(),
            &CodecOptions::default(),
        )?
        .into_owned())
}

/// The encoder of a shard index for `inner_grid` inner chunks per dimension.
pub fn index_encoder(inner_grid: &[u64]) -> Result<Array<MemoryStore>> {
    let mut shape = inner_grid.to_vec();
    shape.push(2);
    let meta = json!({
        "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": "uint64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": u64::MAX, "codecs": index_codecs(), "attributes": {}
    });
    array_from_json(Arc::new(MemoryStore::new()), "/index", &meta)
}

/// A shard object from its encoded inner chunks in C order (`None`: absent, all fill), or `None`
/// if every inner chunk is absent (an all-fill shard is not stored).
pub fn assemble(index: &Array<MemoryStore>, chunks: &[Option<&[u8]>]) -> Result<Option<Vec<u8>>> {
    if chunks.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(chunks.iter().flatten().map(|c| c.len()).sum::<usize>());
    let mut entries = Vec::with_capacity(chunks.len() * 2);
    for c in chunks {
        match c {
            Some(b) => {
                entries.push(body.len() as u64);
                entries.push(b.len() as u64);
                body.extend_from_slice(b);
            }
            None => entries.extend([u64::MAX, u64::MAX]),
        }
    }
    body.extend(encode_with(index, bytemuck::cast_slice(&entries))?);
    Ok(Some(body))
}

/// Bytes of the index at the end of a shard of `n` inner chunks: (offset, length) per inner
/// chunk and the CRC32C.
pub fn index_len(n: u64) -> u64 {
    n * 16 + 4
}

/// The byte ranges in their shard of the inner chunks, in C order over the inner grid (`None`:
/// absent, all fill), decoded from `tail` (the shard's last `index_len` bytes) with `index`
/// (`index_encoder`) so its CRC32C is checked; every range must lie in the shard's body (the
/// `object_len` bytes of the shard without its index).
pub fn decode_index(
    index: &Array<MemoryStore>,
    tail: &[u8],
    object_len: u64,
) -> Result<Vec<Option<std::ops::Range<u64>>>> {
    let shape: Vec<NonZeroU64> = index
        .chunk_shape(&vec![0; index.dimensionality()])?
        .to_vec();
    let decoded = index
        .codecs()
        .decode(
            std::borrow::Cow::Borrowed(tail),
            &shape,
            index.data_type(),
            index.fill_value(),
            &CodecOptions::default(),
        )?
        .into_fixed()?;
    let body = object_len.checked_sub(tail.len() as u64).ok_or_else(|| {
        anyhow::anyhow!("a shard of {object_len} bytes has no room for its index")
    })?;
    decoded
        .chunks_exact(16)
        .map(|e| {
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
            match (word(&e[..8]), word(&e[8..])) {
                (u64::MAX, u64::MAX) => Ok(None),
                (offset, len) if offset.checked_add(len).is_some_and(|end| end <= body) => {
                    Ok(Some(offset..offset + len))
                }
                (offset, len) => anyhow::bail!(
                    "shard index entry ({offset}, {len}) outside the shard's {body}-byte body"
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assembled_index_decodes_to_its_ranges_and_a_corrupt_one_fails() {
        let index = index_encoder(&[2, 2]).unwrap();
        let (a, b) = (vec![1u8; 5], vec![2u8; 3]);
        let shard = assemble(&index, &[Some(&a), None, Some(&b), None])
            .unwrap()
            .unwrap();
        let n = index_len(4) as usize;
        let tail = &shard[shard.len() - n..];
        let ranges = decode_index(&index, tail, shard.len() as u64).unwrap();
        assert_eq!(ranges, vec![Some(0..5), None, Some(5..8), None]);
        let mut bad = tail.to_vec();
        bad[3] ^= 1;
        assert!(decode_index(&index, &bad, shard.len() as u64).is_err());
        // A range past the body (the index read from a shorter object) is refused.
        assert!(decode_index(&index, tail, n as u64 + 4).is_err());
    }
}
