//! TFTP packets (RFC 1350, with the OACK of RFC 2347): decoding and
//! encoding, nothing else. Pure.

use std::fmt;

/// Opcodes on the wire.
const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// Why bytes are not a TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet of {0} bytes is too short")]
    TooShort(usize),
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("a string field is not terminated by NUL")]
    Unterminated,
    #[error("an option has a name but no value")]
    OptionWithoutValue,
}

/// TFTP error codes (RFC 1350 section 5, RFC 2347 code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTid = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionsRefused = 8,
}

impl ErrorCode {
    /// The code for a wire value (unknown values map to `NotDefined`).
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionsRefused,
            _ => ErrorCode::NotDefined,
        }
    }
}

/// A request's options in the order sent; names are compared ignoring case.
pub type Options = Vec<(String, String)>;

/// A decoded packet. Strings are kept as sent, decoded lossily: TFTP names
/// are bytes, and refusing odd bytes is the file resolver's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request: file, mode, options.
    Rrq {
        filename: String,
        mode: String,
        options: Options,
    },
    /// Write request.
    Wrq {
        filename: String,
        mode: String,
        options: Options,
    },
    /// A data block.
    Data { block: u16, data: &'a [u8] },
    /// Acknowledges a block (0 acknowledges an OACK).
    Ack { block: u16 },
    /// Ends the transfer.
    Error { code: u16, message: String },
    /// Options acknowledged by the server.
    Oack { options: Options },
}

impl<'a> Packet<'a> {
    /// Decodes one datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if buf.len() < 2 {
            return Err(PacketError::TooShort(buf.len()));
        }
        let opcode = u16::from_be_bytes([buf[0], buf[1]]);
        let body = &buf[2..];
        match opcode {
            RRQ | WRQ => {
                let mut fields = strings(body)?;
                if fields.len() < 2 {
                    return Err(PacketError::Unterminated);
                }
                if fields.len() % 2 == 1 {
                    return Err(PacketError::OptionWithoutValue);
                }
                let rest = fields.split_off(2);
                let options = rest
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                let [filename, mode]: [String; 2] = fields.try_into().expect("two fields");
                Ok(if opcode == RRQ {
                    Packet::Rrq {
                        filename,
                        mode,
                        options,
                    }
                } else {
                    Packet::Wrq {
                        filename,
                        mode,
                        options,
                    }
                })
            }
            DATA => {
                let block = u16_at(body)?;
                Ok(Packet::Data {
                    block,
                    data: &body[2..],
                })
            }
            ACK => Ok(Packet::Ack {
                block: u16_at(body)?,
            }),
            ERROR => {
                let code = u16_at(body)?;
                // Some clients omit the final NUL; take the message anyway.
                let text = &body[2..];
                let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
                Ok(Packet::Error {
                    code,
                    message: String::from_utf8_lossy(&text[..end]).into_owned(),
                })
            }
            OACK => {
                let fields = strings(body)?;
                if fields.len() % 2 == 1 {
                    return Err(PacketError::OptionWithoutValue);
                }
                Ok(Packet::Oack {
                    options: fields
                        .chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect(),
                })
            }
            other => Err(PacketError::UnknownOpcode(other)),
        }
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        match self {
            Packet::Rrq {
                filename,
                mode,
                options,
            }
            | Packet::Wrq {
                filename,
                mode,
                options,
            } => {
                let op = if matches!(self, Packet::Rrq { .. }) {
                    RRQ
                } else {
                    WRQ
                };
                out.extend_from_slice(&op.to_be_bytes());
                put_str(out, filename);
                put_str(out, mode);
                for (k, v) in options {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
            Packet::Data { block, data } => {
                out.extend_from_slice(&DATA.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                out.extend_from_slice(&ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&ERROR.to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                put_str(out, message);
            }
            Packet::Oack { options } => {
                out.extend_from_slice(&OACK.to_be_bytes());
                for (k, v) in options {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The 4 bytes that open a DATA packet for `block`; its data follows.
pub fn data_header(block: u16) -> [u8; 4] {
    let [op_hi, op_lo] = DATA.to_be_bytes();
    let [hi, lo] = block.to_be_bytes();
    [op_hi, op_lo, hi, lo]
}

/// An ERROR packet's bytes.
pub fn error_bytes(code: ErrorCode, message: &str) -> Vec<u8> {
    Packet::Error {
        code: code as u16,
        message: message.to_owned(),
    }
    .to_bytes()
}

fn u16_at(b: &[u8]) -> Result<u16, PacketError> {
    match b {
        [hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(PacketError::TooShort(b.len() + 2)),
    }
}

/// NUL-terminated strings filling `b` exactly.
fn strings(b: &[u8]) -> Result<Vec<String>, PacketError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    if *b.last().expect("not empty") != 0 {
        return Err(PacketError::Unterminated);
    }
    Ok(b[..b.len() - 1]
        .split(|c| *c == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_fixture_decodes_and_round_trips() {
        // As sent by QEMU's iPXE ROM for its size probe.
        let bytes = b"\x00\x01undionly.kpxe\x00octet\x00tsize\x000\x00blksize\x001432\x00";
        let p = Packet::decode(bytes).unwrap();
        assert_eq!(
            p,
            Packet::Rrq {
                filename: "undionly.kpxe".into(),
                mode: "octet".into(),
                options: vec![
                    ("tsize".into(), "0".into()),
                    ("blksize".into(), "1432".into())
                ],
            }
        );
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn other_packets_round_trip() {
        let cases: Vec<&[u8]> = vec![
            b"\x00\x02f\x00netascii\x00",
            b"\x00\x03\x00\x07abc",
            b"\x00\x03\xff\xff",
            b"\x00\x04\x00\x00",
            b"\x00\x05\x00\x01File not found\x00",
            b"\x00\x06blksize\x001468\x00tsize\x00123\x00",
        ];
        for c in cases {
            let p = Packet::decode(c).unwrap();
            assert_eq!(p.to_bytes(), c, "{p:?}");
        }
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let cases: Vec<(&[u8], PacketError)> = vec![
            (b"", PacketError::TooShort(0)),
            (b"\x00", PacketError::TooShort(1)),
            (b"\x00\x09", PacketError::UnknownOpcode(9)),
            (b"\x00\x01file", PacketError::Unterminated),
            (b"\x00\x01file\x00", PacketError::Unterminated),
            (
                b"\x00\x01f\x00octet\x00tsize\x00",
                PacketError::OptionWithoutValue,
            ),
            (b"\x00\x04\x00", PacketError::TooShort(3)),
            (b"\x00\x03", PacketError::TooShort(2)),
        ];
        for (bytes, want) in cases {
            assert_eq!(Packet::decode(bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn error_without_final_nul_is_accepted() {
        assert_eq!(
            Packet::decode(b"\x00\x05\x00\x08abort"),
            Ok(Packet::Error {
                code: 8,
                message: "abort".into()
            })
        );
    }
}
