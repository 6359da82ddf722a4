//! The encryption of a Web Push message (RFC 8291, in the `aes128gcm` content coding of
//! RFC 8188): one record sealed for a browser's P-256 key and auth secret, with a fresh
//! sender key and salt per message. On ring (ECDH P-256, HKDF-SHA256, AES-128-GCM), which
//! the TLS stack already carries. Pure but for the randomness; no I/O.

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, agreement, hkdf};

/// Largest message sealed: push services take bodies of 4,096 bytes, and sealing adds 86
/// bytes of header, a delimiter and a 16-byte tag.
pub(crate) const MAX_PLAINTEXT: usize = 4096 - 86 - 1 - 16;
/// The record size announced in the header (one record is all a push carries).
const RECORD_SIZE: u32 = 4096;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    #[error("the browser's key is not a point on the P-256 curve")]
    BadKey,
    #[error("the message is longer than {MAX_PLAINTEXT} bytes")]
    TooLong,
    #[error("the system's random source failed")]
    Random,
    #[error("the cipher refused the key")]
    Cipher,
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), SealError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(info, Len(out.len()))
        .map_err(|_| SealError::Cipher)?;
    okm.fill(out).map_err(|_| SealError::Cipher)
}

/// Seals `plaintext` for the browser whose key is `ua_public` (65 bytes, uncompressed) and
/// whose auth secret is `auth` (16 bytes).
pub(crate) fn seal(ua_public: &[u8], auth: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(SealError::TooLong);
    }
    let rng = SystemRandom::new();
    let sender = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| SealError::Random)?;
    let as_public = sender.compute_public_key().map_err(|_| SealError::Random)?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| SealError::Random)?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let secret =
        agreement::agree_ephemeral(sender, &peer, |s| s.to_vec()).map_err(|_| SealError::BadKey)?;
    let keys = Keys {
        ecdh: &secret,
        ua_public,
        as_public: as_public.as_ref(),
        auth,
    };
    seal_with(&keys, &salt, plaintext)
}

/// The key material of one message.
struct Keys<'a> {
    ecdh: &'a [u8],
    ua_public: &'a [u8],
    as_public: &'a [u8],
    auth: &'a [u8],
}

/// [`seal`] with the ECDH secret, the sender's key and the salt given.
fn seal_with(k: &Keys<'_>, salt: &[u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut ikm = [0u8; 32];
    let info: &[&[u8]] = &[b"WebPush: info\0", k.ua_public, k.as_public];
    hkdf(k.auth, k.ecdh, info, &mut ikm)?;
    let mut cek = [0u8; 16];
    hkdf(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek)?;
    let mut nonce = [0u8; 12];
    hkdf(salt, &ikm, &[b"Content-Encoding: nonce\0"], &mut nonce)?;
    let key = aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| SealError::Cipher)?;
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2); // the last (and only) record, unpadded
    aead::LessSafeKey::new(key)
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut record,
        )
        .map_err(|_| SealError::Cipher)?;
    let mut out = Vec::with_capacity(21 + k.as_public.len() + record.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(k.as_public.len() as u8);
    out.extend_from_slice(k.as_public);
    out.extend_from_slice(&record);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// RFC 8291, Appendix A.
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn the_rfc_8291_example_seals_byte_for_byte() {
        let (ua, auth) = (b(UA_PUBLIC), b(AUTH));
        let as_public = b(
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
        );
        let keys = Keys {
            ecdh: &b("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"),
            ua_public: &ua,
            as_public: &as_public,
            auth: &auth,
        };
        let salt: [u8; 16] = b("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let sealed = seal_with(&keys, &salt, b"When I grow up, I want to be a watermelon").unwrap();
        let expected = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";
        assert_eq!(URL_SAFE_NO_PAD.encode(sealed), expected);
    }

    #[test]
    fn each_message_gets_its_own_key_and_bad_keys_or_sizes_are_refused() {
        let (ua, auth) = (b(UA_PUBLIC), b(AUTH));
        let one = seal(&ua, &auth, b"hi").unwrap();
        let two = seal(&ua, &auth, b"hi").unwrap();
        assert_ne!(one[..16], two[..16], "a fresh salt");
        assert_ne!(one[21..86], two[21..86], "a fresh sender key");
        assert_eq!(one.len(), 86 + 2 + 1 + 16);
        let mut off_curve = ua.clone();
        off_curve[64] ^= 1;
        assert_eq!(seal(&off_curve, &auth, b"hi"), Err(SealError::BadKey));
        let big = vec![b'x'; MAX_PLAINTEXT];
        assert_eq!(seal(&ua, &auth, &big).unwrap().len(), 4096);
        assert_eq!(
            seal(&ua, &auth, &[big, vec![b'x']].concat()),
            Err(SealError::TooLong)
        );
    }
}
