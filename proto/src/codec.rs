//! The gRPC codec every Convoy service and client uses: prost encoding with
//! small initial buffers.
//!
//! tonic allocates an 8 KiB encode buffer and an 8 KiB decode buffer per
//! RPC up front and keeps them for the RPC's life. An agent's session is one
//! RPC that lives for days, and its messages are a few hundred bytes, so at
//! 10,000 agents those buffers alone were 160 MiB of the coordinator's
//! memory (BENCHMARKS.md, "Scale"). Here they start at 1 KiB and grow in 1 KiB
//! steps (doubling underneath) when a larger message comes.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial (and growth step) size of a stream's encode and decode buffers.
pub const BUFFER_SIZE: usize = 1024;

/// Encoded messages ready on a stream are gathered up to this size before
/// they are handed to HTTP/2 (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
