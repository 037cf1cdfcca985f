//! ggml tensor types and their dequantization to `f32`.
//!
//! Every routine here reproduces, operation for operation in `f32`, the
//! reference dequantization of the `gguf` Python package
//! (`gguf.quants.dequantize`, version 0.19), so results are bit-identical.
//! Block layouts are those of ggml's `ggml-common.h`; all multi-byte fields
//! are little-endian.

use half::f16;

/// Elements per super-block of the K-quants.
const QK_K: usize = 256;

/// A ggml tensor element type, with the numbers ggml gives them.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

impl GgmlType {
    /// The types [`dequantize`] handles, for error messages.
    pub const SUPPORTED_NAMES: &'static str =
        "F32, F16, BF16, F64, I8, I16, I32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

    /// The type with ggml number `id`, or `None` for numbers ggml does not define
    /// (including the retired 4, 5 and 31..=33, 36..=38).
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            _ => return None,
        })
    }

    /// `(elements per block, bytes per block)`, as in gguf-py's `GGML_QUANT_SIZES`.
    pub fn block_layout(self) -> (usize, usize) {
        use GgmlType::*;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Q4_0 => (32, 2 + 16),
            Q4_1 => (32, 2 + 2 + 16),
            Q5_0 => (32, 2 + 4 + 16),
            Q5_1 => (32, 2 + 2 + 4 + 16),
            Q8_0 => (32, 2 + 32),
            Q8_1 => (32, 4 + 4 + 32),
            Q2_K => (QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
            Q3_K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            Q4_K => (QK_K, 2 + 2 + QK_K / 2 + 12),
            Q5_K => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
            Q6_K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            Q8_K => (QK_K, 4 + QK_K + QK_K / 8),
            IQ2_XXS => (QK_K, 2 + QK_K / 4),
            IQ2_XS => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            IQ3_XXS => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            IQ1_S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            IQ4_NL => (32, 2 + 16),
            IQ3_S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            IQ2_S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            IQ4_XS => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            F64 => (1, 8),
            IQ1_M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            BF16 => (1, 2),
            TQ1_0 => (QK_K, 2 + 4 * 13),
            TQ2_0 => (QK_K, 2 + 64),
            MXFP4 => (32, 1 + 16),
        }
    }

    /// Whether [`dequantize`] handles this type.
    pub fn is_supported(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16
                | BF16
                | F64
                | I8
                | I16
                | I32
                | Q4_0
                | Q4_1
                | Q5_0
                | Q5_1
                | Q8_0
                | Q2_K
                | Q3_K
                | Q4_K
                | Q5_K
                | Q6_K
        )
    }
}

/// Dequantizes `bytes` (whole blocks of type `ty`) into `out`, appending.
///
/// Returns `false`, appending nothing, when the type is not supported (see
/// [`GgmlType::is_supported`]). Trailing bytes that do not fill a block are
/// ignored; the reader has already checked the byte count.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    use GgmlType::*;
    let (block, size) = ty.block_layout();
    out.reserve(bytes.len() / size * block);
    let blocks = bytes.chunks_exact(size);
    match ty {
        F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        F16 => out.extend(blocks.map(|b| f16_at(b, 0))),
        // gguf-py: `(int16 as int32) << 16` viewed as f32, i.e. the bits in the high half.
        BF16 => out.extend(blocks.map(|b| f32::from_bits((u16_at(b, 0) as u32) << 16))),
        F64 => {
            out.extend(blocks.map(|b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }))
        }
        I8 => out.extend(blocks.map(|b| b[0] as i8 as f32)),
        I16 => out.extend(blocks.map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)),
        I32 => out.extend(blocks.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)),
        Q4_0 => blocks.for_each(|b| q4_0(b, out)),
        Q4_1 => blocks.for_each(|b| q4_1(b, out)),
        Q5_0 => blocks.for_each(|b| q5_0(b, out)),
        Q5_1 => blocks.for_each(|b| q5_1(b, out)),
        Q8_0 => blocks.for_each(|b| q8_0(b, out)),
        Q2_K => blocks.for_each(|b| q2_k(b, out)),
        Q3_K => blocks.for_each(|b| q3_k(b, out)),
        Q4_K => blocks.for_each(|b| q4_k(b, out)),
        Q5_K => blocks.for_each(|b| q5_k(b, out)),
        Q6_K => blocks.for_each(|b| q6_k(b, out)),
        _ => return false,
    }
    true
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16_at(b, i)).to_f32()
}

/// The 32 four-bit codes of a 16-byte array: low nibbles first, then high nibbles.
fn nibbles(qs: &[u8]) -> impl Iterator<Item = u8> + '_ {
    qs.iter().map(|q| q & 0x0F).chain(qs.iter().map(|q| q >> 4))
}

/// `block_q4_0 { f16 d; u8 qs[16] }`: `d * (q - 8)`.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(nibbles(&b[2..18]).map(|q| d * (q as i8 - 8) as f32));
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16] }`: `d * q + m`.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    out.extend(nibbles(&b[4..20]).map(|q| d * q as f32 + m));
}

/// The 32 five-bit codes of `qh` (bit `i` is the fifth bit of element `i`) and `qs`.
fn five_bit<'a>(qh: &[u8], qs: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    nibbles(qs)
        .enumerate()
        .map(move |(i, q)| q | ((((qh >> i) & 1) as u8) << 4))
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16] }`: `d * (q - 16)`.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(five_bit(&b[2..6], &b[6..22]).map(|q| d * (q as i8 - 16) as f32));
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16] }`: `d * q + m`.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    out.extend(five_bit(&b[4..8], &b[8..24]).map(|q| d * q as f32 + m));
}

/// `block_q8_0 { f16 d; i8 qs[32] }`: `q * d`.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
}

/// `block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }`.
///
/// Element `e = 128 j + 32 s + l` is bits `2s..2s+2` of `qs[32 j + l]`; its
/// sub-block `e / 16` has scale `d * (sc & 15)` and offset `dmin * (sc >> 4)`.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for e in 0..QK_K {
        let (j, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let q = (qs[32 * j + l] >> (2 * s)) & 3;
        let sc = scales[e / 16];
        let dl = d * (sc & 0x0F) as f32;
        let ml = dmin * (sc >> 4) as f32;
        out.push(dl * q as f32 - ml);
    }
}

/// `block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`.
///
/// Sixteen 6-bit scales (minus 32): low four bits from nibbles of
/// `scales[0..8]` (low nibbles first), high two bits from 2-bit fields of
/// `scales[8..12]`. Element `e = 128 j + 32 s + l` takes two bits from
/// `qs[32 j + l] >> 2s` and subtracts 4 when bit `e / 32` of `hmask[l]` is clear.
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let mut dl = [0f32; 16];
    for (i, dl) in dl.iter_mut().enumerate() {
        let low = (scales[i % 8] >> (4 * (i / 8))) & 0x0F;
        let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        let sc = ((low | (high << 4)) as i8 - 32) as f32;
        *dl = d * sc;
    }
    for e in 0..QK_K {
        let (j, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let ql = ((qs[32 * j + l] >> (2 * s)) & 3) as i8;
        let qh = ((hmask[l] >> (e / 32)) & 1) ^ 1;
        let q = (ql - (qh << 2) as i8) as f32;
        out.push(dl[e / 16] * q);
    }
}

/// The eight 6-bit scales and mins of Q4_K / Q5_K, packed in 12 bytes.
fn scale_min_k4(scales: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (d, m, md) = (&scales[0..4], &scales[4..8], &scales[8..12]);
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = d[j] & 0x3F;
        sc[j + 4] = (md[j] & 0x0F) | ((d[j] >> 2) & 0x30);
        mn[j] = m[j] & 0x3F;
        mn[j + 4] = (md[j] >> 4) | ((m[j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`.
///
/// Element `e = 64 j + 32 s + l` is nibble `s` of `qs[32 j + l]`, in
/// sub-block `2 j + s`: `d * sc * q - dmin * m`.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    for e in 0..QK_K {
        let (j, s, l) = (e / 64, (e / 32) % 2, e % 32);
        let q = (qs[32 * j + l] >> (4 * s)) & 0x0F;
        let sub = e / 32;
        let ds = d * sc[sub] as f32;
        let dm = dmin * mn[sub] as f32;
        out.push(ds * q as f32 - dm);
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`:
/// Q4_K with a fifth bit, bit `e / 32` of `qh[e % 32]`.
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for e in 0..QK_K {
        let (j, s, l) = (e / 64, (e / 32) % 2, e % 32);
        let sub = e / 32;
        let ql = (qs[32 * j + l] >> (4 * s)) & 0x0F;
        let q = ql | (((qh[l] >> sub) & 1) << 4);
        let ds = d * sc[sub] as f32;
        let dm = dmin * mn[sub] as f32;
        out.push(ds * q as f32 - dm);
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`.
///
/// Element `e = 128 j + 32 s + l`: low nibble from `ql[64 j + 32 (s % 2) + l]`
/// (high nibble when `s >= 2`), two high bits from `qh[32 j + l] >> 2s`;
/// value `d * scale[e / 16] * (q - 32)`.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for e in 0..QK_K {
        let (j, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let low = (ql[64 * j + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
        let high = (qh[32 * j + l] >> (2 * s)) & 0x03;
        let q = ((low | (high << 4)) as i8 - 32) as f32;
        let ds = d * scales[e / 16] as i8 as f32;
        out.push(ds * q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn every_defined_type_number_round_trips_and_unknown_numbers_are_none() {
        for id in 0..64 {
            if let Some(ty) = GgmlType::from_id(id) {
                let (block, size) = ty.block_layout();
                assert!(block > 0 && size > 0, "{ty:?}");
            }
        }
        for retired in [4, 5, 31, 32, 33, 36, 37, 38, 1000] {
            assert_eq!(GgmlType::from_id(retired), None);
        }
    }

    #[test]
    fn q8_0_is_scale_times_code() {
        let mut block = Vec::from(f16_bytes(0.5));
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let mut out = Vec::new();
        assert!(dequantize(GgmlType::Q8_0, &block, &mut out));
        let expected: Vec<f32> = (0..32).map(|i| (i - 16) as f32 * 0.5).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn q4_0_puts_low_nibbles_first() {
        let mut block = Vec::from(f16_bytes(2.0));
        // byte i: low nibble 9 (-> +1), high nibble 7 (-> -1)
        block.extend([0x79u8; 16]);
        let mut out = Vec::new();
        assert!(dequantize(GgmlType::Q4_0, &block, &mut out));
        assert_eq!(&out[..16], &[2.0; 16]);
        assert_eq!(&out[16..], &[-2.0; 16]);
    }

    #[test]
    fn bf16_keeps_the_high_half_of_the_bits() {
        let mut out = Vec::new();
        let bytes = [0x80, 0x3F, 0x00, 0xC0]; // 1.0, -2.0
        assert!(dequantize(GgmlType::BF16, &bytes, &mut out));
        assert_eq!(out, vec![1.0, -2.0]);
    }

    #[test]
    fn unsupported_types_append_nothing() {
        let mut out = Vec::new();
        assert!(!dequantize(GgmlType::IQ2_XXS, &[0u8; 66], &mut out));
        assert!(out.is_empty());
    }
}
