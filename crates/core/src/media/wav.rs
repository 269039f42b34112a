//! WAV (RIFF) for PCM audio: the container Gemini's speech (raw 16-bit PCM) is wrapped in when a
//! client asks for `wav`, and the duration of an uploaded WAV, which prices its transcription
//! exactly where the vendor reports none.

/// The 44-byte header of a WAV file holding `data_len` bytes of 16-bit little-endian PCM.
pub fn header(data_len: u32, sample_rate: u32, channels: u16) -> [u8; 44] {
    let block_align = channels * 2;
    let byte_rate = sample_rate * u32::from(block_align);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// `pcm` (16-bit little-endian) as a WAV file.
pub fn wrap(pcm: &[u8], sample_rate: u32, channels: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(&header(pcm.len() as u32, sample_rate, channels));
    out.extend_from_slice(pcm);
    out
}

/// The duration in seconds of a WAV file, from its `fmt ` byte rate and `data` size (the size
/// cut to the bytes present, for a streamed file that states none); `None` if it is not one.
pub fn duration_s(bytes: &[u8]) -> Option<f64> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = at + 8;
        if id == b"fmt " && size >= 16 && body + 16 <= bytes.len() {
            byte_rate = Some(u32::from_le_bytes(bytes[body + 8..body + 12].try_into().ok()?));
        } else if id == b"data" {
            let present = size.min(bytes.len() - body);
            return byte_rate.filter(|&r| r > 0).map(|r| present as f64 / f64::from(r));
        }
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_pcm_reads_back_its_duration() {
        let pcm = vec![0u8; 48_000]; // one second at 24 kHz, mono, 16-bit
        let file = wrap(&pcm, 24_000, 1);
        assert_eq!(file.len(), 44 + 48_000);
        assert_eq!(&file[36..40], b"data");
        assert_eq!(duration_s(&file), Some(1.0));
        // Cut short: what is there counts.
        assert_eq!(duration_s(&file[..44 + 24_000]), Some(0.5));
    }

    #[test]
    fn other_bytes_have_no_duration() {
        for bytes in
            [&b""[..], b"RIFF", b"RIFF\0\0\0\0WAVE", b"ID3\x03", b"RIFF\xff\xff\xff\xffWAVEfmt \xff\xff\xff\xff"]
        {
            assert_eq!(duration_s(bytes), None);
        }
    }
}
