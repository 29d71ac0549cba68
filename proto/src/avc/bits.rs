//! Bit-level reading for codec headers (H.264 SPS, AAC AudioSpecificConfig).
//!
//! [`BitReader`] walks a byte slice most-significant bit first, the order both H.264 and MPEG-4
//! audio use, and decodes the exp-Golomb codes of H.264. [`unescape_rbsp`] turns a NAL unit
//! payload into its raw byte sequence (RBSP) by removing emulation-prevention bytes, which must
//! happen before any bit of an SPS is read. Every read is bounds-checked and fails with
//! [`BitsExhausted`] instead of panicking: the bytes come from the publisher.

/// The reader ran past the end of its input (or an exp-Golomb code was longer than 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bitstream ended early or held an oversized exp-Golomb code")]
pub struct BitsExhausted;

/// Reads bits most-significant first from a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    /// The bytes being read.
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// Starts reading at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// How many bits are left to read.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Reads one bit.
    pub fn bit(&mut self) -> Result<bool, BitsExhausted> {
        let byte = self.data.get(self.pos / 8).ok_or(BitsExhausted)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` bits (at most 32) as an unsigned number.
    pub fn bits(&mut self, n: u32) -> Result<u32, BitsExhausted> {
        if n > 32 || self.remaining() < n as usize {
            return Err(BitsExhausted);
        }
        let mut value: u64 = 0;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit()?);
        }
        // `n <= 32`, so the value fits.
        Ok(value as u32)
    }

    /// Reads 8 bits.
    pub fn byte(&mut self) -> Result<u8, BitsExhausted> {
        // Eight bits always fit in a `u8`.
        Ok(self.bits(8)? as u8)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), BitsExhausted> {
        if self.remaining() < n {
            return Err(BitsExhausted);
        }
        self.pos += n;
        Ok(())
    }

    /// Reads an unsigned exp-Golomb code `ue(v)`; codes longer than 32 bits are rejected, so the
    /// result is at most `u32::MAX - 1`.
    pub fn ue(&mut self) -> Result<u32, BitsExhausted> {
        let mut leading_zeros = 0u32;
        while !self.bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(BitsExhausted);
            }
        }
        let suffix = self.bits(leading_zeros)?;
        // leading_zeros <= 31: (1 << 31) - 1 + suffix < 2^32.
        Ok(((1u64 << leading_zeros) - 1 + u64::from(suffix)) as u32)
    }

    /// Reads a signed exp-Golomb code `se(v)`.
    pub fn se(&mut self) -> Result<i32, BitsExhausted> {
        let code = i64::from(self.ue()?);
        let magnitude = (code + 1) / 2;
        // |magnitude| <= 2^31, and the odd codes map to positive values.
        Ok(if code % 2 == 1 {
            magnitude as i32
        } else {
            (-magnitude) as i32
        })
    }
}

/// Removes emulation-prevention bytes: every `00 00 03` becomes `00 00`.
pub fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bits_across_bytes() {
        let mut r = BitReader::new(&[0b1010_1100, 0b0101_0000]);
        assert!(r.bit().unwrap());
        assert_eq!(r.bits(3).unwrap(), 0b010);
        assert_eq!(r.bits(8).unwrap(), 0b1100_0101);
        assert_eq!(r.remaining(), 4);
        assert_eq!(r.bits(5), Err(BitsExhausted));
    }

    #[test]
    fn exp_golomb_codes() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3, 00111 -> 6; then se: 010 -> +1, 011 -> -1.
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0011, 0b1010_0110]);
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        assert_eq!(r.ue().unwrap(), 6);
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn oversized_exp_golomb_is_rejected() {
        let mut r = BitReader::new(&[0u8; 8]);
        assert_eq!(r.ue(), Err(BitsExhausted));
        let mut r = BitReader::new(&[0xFF; 4]);
        r.skip(32).unwrap();
        assert_eq!(r.ue(), Err(BitsExhausted));
    }

    #[test]
    fn largest_exp_golomb_fits() {
        // 31 zeros, a one, then 31 ones: 2^32 - 2.
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE]);
        assert_eq!(r.ue().unwrap(), u32::MAX - 1);
    }

    #[test]
    fn unescape_removes_emulation_prevention() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
        // A 3 not preceded by two zeros stays.
        assert_eq!(unescape_rbsp(&[0, 3, 0, 0, 0, 3]), vec![0, 3, 0, 0, 0]);
    }
}
