//! The benchmark data sets, generated deterministically with the sizes of the driver
//! benchmarking spec's files: SMALL_DOC (≈275 bytes), TWEET (≈1.6 KB, keyed by an integer
//! `_id` for find-by-id), LARGE_DOC (≈2.7 MB).

use bson::{doc, Bson, Document};

/// A tiny deterministic generator (xorshift), so every run sends the same bytes.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'a' + (self.next() % 26) as u8))
            .collect()
    }
}

/// ≈275 bytes of mixed strings and integers, no `_id` (drivers add one).
pub fn small_doc() -> Document {
    let mut g = Gen(0x5eed_5a11);
    let mut d = Document::new();
    for i in 0..8 {
        d.insert(format!("s{i}"), g.word(12));
        d.insert(format!("n{i}"), (g.next() % 100_000) as i32);
    }
    d
}

/// A tweet-like document of ≈1.6 KB with `_id: id`.
pub fn tweet(id: i32) -> Document {
    let mut g = Gen(0x7ee7 + id as u64);
    doc! {
        "_id": id,
        "text": g.word(140),
        "created_at": "Mon Nov 26 16:00:00 +0000 2026",
        "in_reply_to_status_id": Bson::Null,
        "retweet_count": (g.next() % 1000) as i32,
        "favorited": false,
        "source": g.word(80),
        "user": {
            "id": (g.next() % 1_000_000_000) as i64,
            "name": g.word(20),
            "screen_name": g.word(15),
            "location": g.word(30),
            "description": g.word(120),
            "url": g.word(40),
            "followers_count": (g.next() % 100_000) as i32,
            "friends_count": (g.next() % 10_000) as i32,
            "profile_image_url": g.word(90),
            "profile_background_image_url": g.word(90),
            "profile_background_color": g.word(6),
            "profile_text_color": g.word(6),
            "lang": "en",
            "time_zone": g.word(20),
        },
        "entities": {
            "hashtags": [g.word(10), g.word(12), g.word(8)],
            "urls": [ { "url": g.word(60), "expanded_url": g.word(120) } ],
            "user_mentions": [
                { "screen_name": g.word(15), "name": g.word(20), "id": 12345i64 },
                { "screen_name": g.word(15), "name": g.word(20), "id": 67890i64 },
            ],
        },
        "place": { "full_name": g.word(40), "country": g.word(20), "bbox": [1.5, 2.5, 3.5, 4.5] },
    }
}

/// ≈2.7 MB: many fields of mixed types, nested a little, no `_id`.
pub fn large_doc() -> Document {
    let mut g = Gen(0x1a7e_d0c5);
    let mut d = Document::new();
    for i in 0..2_400 {
        d.insert(
            format!("field{i}"),
            doc! {
                "a": g.word(600),
                "b": (g.next() % 1_000_000) as i64,
                "c": g.word(300),
                "d": [1i32, 2i32, 3i32, (g.next() % 100) as i32],
                "e": (g.next() % 1000) as f64 / 7.0,
                "f": g.word(180),
            },
        );
    }
    d
}

/// The encoded size of `d` in bytes.
pub fn size(d: &Document) -> usize {
    bson::RawDocumentBuf::try_from(d)
        .map(|r| r.as_bytes().len())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_spec_data_sets() {
        let small = size(&small_doc());
        assert!((220..330).contains(&small), "{small}");
        let tweet = size(&tweet(1));
        assert!((1_400..1_900).contains(&tweet), "{tweet}");
        let large = size(&large_doc());
        assert!((2_500_000..2_900_000).contains(&large), "{large}");
    }
}
