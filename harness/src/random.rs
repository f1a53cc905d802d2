use aws_lc_rs::rand::SecureRandom;

use crate::error::{Error, Result};

pub fn fill(buf: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::msg("the system random generator failed"))
}

/// `len` characters from `[A-Za-z0-9]`: unique enough that finding it in a capture cannot be
/// chance (62^len).
pub fn alphanumeric(len: usize) -> Result<String> {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    fill(&mut bytes)?;
    // 256 % 62 bias is irrelevant for a test secret.
    Ok(bytes
        .iter()
        .map(|b| SET[*b as usize % SET.len()] as char)
        .collect())
}

/// A login password that is different in every encoding the sniffer searches: a random core,
/// then characters JSON, URL and form encoding each rewrite.
pub fn password() -> Result<String> {
    Ok(format!("{}\"+/ &é", alphanumeric(20)?))
}
