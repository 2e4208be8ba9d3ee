//! The few protobuf messages of Prometheus remote write 1.0, encoded by
//! hand: `prometheus.WriteRequest` and what it holds, as
//! `prompb/remote.proto` and `prompb/types.proto` define them.
//!
//! ```text
//! message WriteRequest { repeated TimeSeries timeseries = 1; reserved 2; repeated MetricMetadata metadata = 3; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; … }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }
//! ```
//!
//! Only the fields above are written (no metadata, exemplars or native
//! histograms), each series with one sample. A generated encoder would
//! bring a protobuf crate and a build step for four messages of two
//! field kinds.

use crate::exposition::wire::{FIXED64, LEN, VARINT, put_string, put_varint, varint_len};

/// One series and its one sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series<'a> {
    /// Sorted by name, `__name__` among them; no empty value (an empty
    /// value is no label to Prometheus).
    pub(crate) labels: &'a [(&'a str, &'a str)],
    pub(crate) value: f64,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp_ms: i64,
}

const fn tag(field: u8, wire: u8) -> u8 {
    // Every field number here is below 16: the tag is one byte.
    crate::exposition::wire::tag(field as u32, wire) as u8
}

/// A length-delimited field's size: tag, length, content.
fn len_field(content: usize) -> usize {
    1 + varint_len(content as u64) + content
}

fn label_len(name: &str, value: &str) -> usize {
    len_field(name.len()) + len_field(value.len())
}

fn sample_len(timestamp_ms: i64) -> usize {
    // An int64 is encoded as its two's complement, ten bytes when negative.
    1 + 8 + 1 + varint_len(timestamp_ms as u64)
}

fn series_len(series: &Series<'_>) -> usize {
    let labels: usize = series
        .labels
        .iter()
        .map(|(name, value)| len_field(label_len(name, value)))
        .sum();
    labels + len_field(sample_len(series.timestamp_ms))
}

/// Appends the `WriteRequest` holding `series` to `out`, unframed (the
/// whole body of a request before compression).
pub(crate) fn encode_write_request(series: &[Series<'_>], out: &mut Vec<u8>) {
    for s in series {
        out.push(tag(1, LEN)); // WriteRequest.timeseries
        put_varint(out, series_len(s) as u64);
        for (name, value) in s.labels {
            out.push(tag(1, LEN)); // TimeSeries.labels
            put_varint(out, label_len(name, value) as u64);
            put_string(out, 1, name); // Label.name
            put_string(out, 2, value); // Label.value
        }
        out.push(tag(2, LEN)); // TimeSeries.samples
        put_varint(out, sample_len(s.timestamp_ms) as u64);
        out.push(tag(1, FIXED64)); // Sample.value
        out.extend_from_slice(&s.value.to_le_bytes());
        out.push(tag(2, VARINT)); // Sample.timestamp
        put_varint(out, s.timestamp_ms as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_series_encodes_to_the_bytes_worked_out_by_hand() {
        let labels = [("__name__", "up"), ("job", "a")];
        let series = [Series {
            labels: &labels,
            value: 1.0,
            timestamp_ms: 1000,
        }];
        let mut out = Vec::new();
        encode_write_request(&series, &mut out);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0x0A, 0x28][..],                    // WriteRequest.timeseries, 40 bytes
            &[0x0A, 0x0E],                        //   TimeSeries.labels, 14 bytes
            &[0x0A, 0x08], b"__name__",           //     Label.name
            &[0x12, 0x02], b"up",                 //     Label.value
            &[0x0A, 0x08],                        //   TimeSeries.labels, 8 bytes
            &[0x0A, 0x03], b"job",
            &[0x12, 0x01], b"a",
            &[0x12, 0x0C],                        //   TimeSeries.samples, 12 bytes
            &[0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F], //     Sample.value: 1.0 as a little-endian double
            &[0x10, 0xE8, 0x07],                  //     Sample.timestamp: 1000 = 0x68 | 0x80, then 7
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn lengths_past_127_take_two_bytes_and_series_follow_one_another() {
        let long = "x".repeat(200);
        let labels = [("__name__", long.as_str())];
        let one = Series {
            labels: &labels,
            value: f64::INFINITY,
            timestamp_ms: 1_700_000_000_000,
        };
        let mut out = Vec::new();
        encode_write_request(&[one.clone(), one], &mut out);
        // Label: 1+1+8 + 1+2+200 = 213; TimeSeries: (1+2+213) + (1+1+16) = 234, where
        // the sample is 1+8+1+6 (1.7e12 takes 41 bits: six 7-bit groups).
        assert_eq!(series_len(&series_of(&labels)), 234);
        assert_eq!(out.len(), 2 * (1 + 2 + 234));
        assert_eq!(&out[..3], &[0x0A, 0xEA, 0x01]); // 234 = 0x6A | 0x80, then 1
        assert_eq!(out[..237], out[237..]);
        let value_at = 3 + 1 + 2 + 213 + 2 + 1;
        assert_eq!(out[value_at..value_at + 8], f64::INFINITY.to_le_bytes());
    }

    fn series_of<'a>(labels: &'a [(&'a str, &'a str)]) -> Series<'a> {
        Series {
            labels,
            value: 0.0,
            timestamp_ms: 1_700_000_000_000,
        }
    }
}
