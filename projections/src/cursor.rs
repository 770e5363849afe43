use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// An opaque pagination cursor as handed to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// A position in a user's inbox (get-new-messages `since` / `cursor`).
    Inbox(u64),
    /// A sort key in a user's history (get-all-messages `cursor` / `next_cursor`).
    History(String),
}

/// A cursor a client sent that this server did not make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cursor")]
pub struct CursorError;

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        let raw = match self {
            Cursor::Inbox(position) => format!("i:{position}"),
            Cursor::History(key) => format!("h:{key}"),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses the opaque text form.
    pub fn decode(text: &str) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| CursorError)?;
        let raw = String::from_utf8(bytes).map_err(|_| CursorError)?;
        if let Some(position) = raw.strip_prefix("i:") {
            if position.is_empty() || !position.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CursorError);
            }
            return position.parse().map(Cursor::Inbox).map_err(|_| CursorError);
        }
        if let Some(key) = raw.strip_prefix("h:") {
            let well_formed = key.len() == 20 + 1 + 36
                && key.as_bytes()[20] == b'#'
                && key[..20].bytes().all(|b| b.is_ascii_digit());
            return if well_formed {
                Ok(Cursor::History(key.to_string()))
            } else {
                Err(CursorError)
            };
        }
        Err(CursorError)
    }

    /// The inbox position, if this is an inbox cursor.
    pub fn decode_inbox(text: &str) -> Result<u64, CursorError> {
        match Cursor::decode(text)? {
            Cursor::Inbox(position) => Ok(position),
            Cursor::History(_) => Err(CursorError),
        }
    }

    /// The history key, if this is a history cursor.
    pub fn decode_history(text: &str) -> Result<String, CursorError> {
        match Cursor::decode(text)? {
            Cursor::History(key) => Ok(key),
            Cursor::Inbox(_) => Err(CursorError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(Cursor::decode_inbox(&Cursor::Inbox(42).encode()), Ok(42));
        let key = format!("{:020}#{}", 7, "0b7e3c1a-1b0c-4d3f-9a1e-2f4b5c6d7e8f");
        assert_eq!(
            Cursor::decode_history(&Cursor::History(key.clone()).encode()),
            Ok(key)
        );
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for bad in ["", "!!!", "aTo", "aTotMQ", "aDp4", "garbage"] {
            assert_eq!(Cursor::decode(bad), Err(CursorError), "{bad}");
        }
        assert_eq!(
            Cursor::decode_history(&Cursor::Inbox(1).encode()),
            Err(CursorError)
        );
    }
}
