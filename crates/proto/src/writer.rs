//! The writing half of a link, shared by the enclave and the gateway: frames queued on a
//! channel are written in order, several at a time when they are already waiting, and a
//! peer that stops reading for `timeout` ends the link instead of stalling it forever.

use std::time::Duration;

use tokio::{
    io::{AsyncWrite, AsyncWriteExt, BufWriter},
    sync::mpsc,
};

/// Why the writer stopped.
#[derive(Debug)]
pub enum WriterEnd {
    /// Every sender was dropped; the stream was shut down cleanly.
    Done,
    /// Writing failed.
    Failed(std::io::Error),
    /// The peer did not accept a frame within the timeout.
    Stalled(Duration),
}

/// Writes encoded frames from `frames` to `writer` until the channel closes or writing
/// fails or stalls.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    writer: W,
    mut frames: mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
) -> WriterEnd {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = frames.recv().await {
        let wrote = tokio::time::timeout(timeout, async {
            writer.write_all(&frame).await?;
            while let Ok(more) = frames.try_recv() {
                writer.write_all(&more).await?;
            }
            writer.flush().await
        })
        .await;
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return WriterEnd::Failed(e),
            Err(_) => return WriterEnd::Stalled(timeout),
        }
    }
    let _ = writer.shutdown().await;
    WriterEnd::Done
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn writes_frames_in_order_and_shuts_down() {
        let (a, mut b) = tokio::io::duplex(1024);
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(write_frames(a, rx, Duration::from_secs(5)));
        tx.send(b"one".to_vec()).await.unwrap();
        tx.send(b"two".to_vec()).await.unwrap();
        drop(tx);
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"onetwo");
        assert!(matches!(task.await.unwrap(), WriterEnd::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_ends_the_writer() {
        let (a, _b_never_read) = tokio::io::duplex(16);
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(write_frames(a, rx, Duration::from_secs(10)));
        tx.send(vec![0u8; 128 * 1024]).await.unwrap();
        let end = task.await.unwrap();
        assert!(matches!(end, WriterEnd::Stalled(d) if d == Duration::from_secs(10)), "{end:?}");
    }
}
