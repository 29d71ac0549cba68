//! The publishing end of a session: encoded frames from the pool and the source's audio go into
//! the rendition hubs (`{stream}_{height}p`).
//!
//! [`Outputs`] owns the rendition [`Publisher`]s; it sits behind a mutex shared by the session
//! (the publisher's task, which passes audio through) and the session's output task (which
//! drains the pool's bounded channel). Audio is held per rendition until that rendition's video
//! has caught up with it, so each rendition hub receives frames in timestamp order even though
//! encoding lags the source; the hold is bounded. Taking the `Outputs` out of the mutex (when the
//! session ends) drops the publishers, which stops the rendition hubs at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encode::PoolOutput;
use crate::media::frame::{AudioTrack, Frame, StreamInfo, VideoTrack};
use crate::media::hub::Publisher;
use crate::runtime::Shutdown;
use streamfleet_proto::names::RenditionId;

/// Audio frames held per rendition while its video lags (about 3 s of AAC at 44.1 kHz).
pub const MAX_HELD_AUDIO: usize = 128;
/// Pool outputs handled per lock of the shared state.
const BATCH: usize = 64;

/// A transcoded rendition as described to the stream record.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionInfo {
    /// Which rendition.
    pub name: RenditionId,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Configured video bit rate, bits per second.
    pub bitrate: u64,
    /// RFC 6381 codec string of the encoder's output.
    pub codec: String,
}

/// One rendition hub being fed.
#[derive(Debug)]
pub struct RenditionOutput {
    /// The rendition hub's publisher.
    pub publisher: Publisher,
    /// `{height}p`.
    pub name: String,
    /// Configured video bit rate.
    pub bitrate: u64,
    video: Option<VideoTrack>,
    held_audio: VecDeque<Frame>,
}

impl RenditionOutput {
    /// Feeds `publisher`.
    pub fn new(publisher: Publisher, name: String, bitrate: u64) -> Self {
        RenditionOutput {
            publisher,
            name,
            bitrate,
            video: None,
            held_audio: VecDeque::new(),
        }
    }

    fn release_audio_until(&mut self, dts: u64) {
        while self.held_audio.front().is_some_and(|a| a.dts <= dts) {
            if let Some(a) = self.held_audio.pop_front() {
                self.publisher.send(a);
            }
        }
    }
}

/// Every rendition hub of a session.
#[derive(Debug)]
pub struct Outputs {
    renditions: Vec<RenditionOutput>,
    audio: Option<AudioTrack>,
}

impl Outputs {
    /// Outputs into `renditions` (index order = the session's rendition order).
    pub fn new(renditions: Vec<RenditionOutput>) -> Self {
        Outputs {
            renditions,
            audio: None,
        }
    }

    fn info(audio: &Option<AudioTrack>, video: &VideoTrack) -> StreamInfo {
        StreamInfo {
            video: Some(video.clone()),
            audio: audio.clone(),
            metadata: None,
        }
    }

    /// The source's audio description changed.
    pub fn audio_track(&mut self, track: Option<AudioTrack>) {
        self.audio = track;
        for r in &mut self.renditions {
            if let Some(video) = &r.video {
                r.publisher.set_info(Self::info(&self.audio, video));
            }
        }
    }

    /// A source audio frame, for every described rendition.
    pub fn audio(&mut self, frame: &Frame) {
        if self.audio.is_none() {
            return;
        }
        for r in &mut self.renditions {
            if r.video.is_none() {
                continue;
            }
            if r.held_audio.len() == MAX_HELD_AUDIO
                && let Some(oldest) = r.held_audio.pop_front()
            {
                r.publisher.send(oldest);
            }
            r.held_audio.push_back(frame.clone());
        }
    }

    /// Applies one pool output; returns the rendition described, if it was a description.
    pub fn apply(&mut self, output: PoolOutput) -> Option<RenditionInfo> {
        match output {
            PoolOutput::Described { index, track } => {
                let r = self.renditions.get_mut(index)?;
                r.publisher.set_info(Self::info(&self.audio, &track));
                let info = RenditionInfo {
                    name: r.publisher.hub().key().rendition,
                    width: track.width,
                    height: track.height,
                    bitrate: r.bitrate,
                    codec: track.codec.clone(),
                };
                r.video = Some(track);
                Some(info)
            }
            PoolOutput::Video { index, frame } => {
                let r = self.renditions.get_mut(index)?;
                if r.video.is_some() {
                    r.release_audio_until(frame.dts);
                    r.publisher.send(frame);
                }
                None
            }
        }
    }
}

/// What the session and its output task share.
#[derive(Debug, Default)]
pub struct Shared {
    /// `None` once the session ended.
    outputs: Mutex<Option<Outputs>>,
    /// Renditions described so far (index order).
    renditions: Mutex<Vec<Option<RenditionInfo>>>,
    /// A rendition was described since the session last looked.
    changed: AtomicBool,
}

impl Shared {
    /// Shared state around `outputs`.
    pub fn new(outputs: Outputs) -> Arc<Self> {
        let n = outputs.renditions.len();
        Arc::new(Shared {
            outputs: Mutex::new(Some(outputs)),
            renditions: Mutex::new(vec![None; n]),
            changed: AtomicBool::new(false),
        })
    }

    /// The outputs, unless the session ended.
    pub fn outputs(&self) -> MutexGuard<'_, Option<Outputs>> {
        // Outputs are consistent between statements that could panic.
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the outputs: the rendition publishers are dropped now.
    pub fn end(&self) {
        let outputs = self.outputs().take();
        drop(outputs);
    }

    /// Renditions described so far.
    pub fn renditions(&self) -> Vec<RenditionInfo> {
        self.renditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Whether renditions were described since the last call.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }

    fn described(&self, index: usize, info: RenditionInfo) {
        if let Some(slot) = self
            .renditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index)
        {
            *slot = Some(info);
        }
        self.changed.store(true, Ordering::Release);
    }
}

/// Drains the pool's outputs into the rendition hubs until the session ends.
pub async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<PoolOutput>,
    cancel: CancellationToken,
    shutdown: Shutdown,
) {
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            () = cancel.cancelled() => break,
            () = shutdown.stopped() => break,
        };
        let mut guard = shared.outputs();
        let Some(outputs) = guard.as_mut() else { break };
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(m) = next.take() {
            let index = match &m {
                PoolOutput::Described { index, .. } => Some(*index),
                PoolOutput::Video { .. } => None,
            };
            if let (Some(index), Some(info)) = (index, outputs.apply(m)) {
                shared.described(index, info);
            }
            handled += 1;
            if handled < BATCH {
                next = rx.try_recv().ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::TrackKind;
    use crate::media::hub::{HubEvent, HubKey, Hubs, SubscriberKind};
    use bytes::Bytes;

    fn frame(kind: TrackKind, dts: u64, keyframe: bool) -> Frame {
        Frame::new(kind, dts, keyframe, Bytes::from_static(b"x"))
    }

    fn track() -> VideoTrack {
        VideoTrack {
            sequence_header: Bytes::from_static(b"seq"),
            width: 426,
            height: 240,
            codec: "avc1.64000d".into(),
            frame_rate: Some(30.0),
        }
    }

    fn audio_track() -> AudioTrack {
        AudioTrack {
            sequence_header: Bytes::from_static(b"asc"),
            codec: "mp4a.40.2".into(),
            sample_rate: 44_100,
            channels: 2,
        }
    }

    #[tokio::test]
    async fn audio_waits_for_the_rendition_video_and_stays_bounded() {
        let hubs = Hubs::default();
        let hub = hubs.get_or_create(&HubKey::from_player_name("live", "s_240p"));
        let mut sub = hub.subscribe_with_capacity(SubscriberKind::Internal, 4096);
        let mut out = Outputs::new(vec![RenditionOutput::new(
            hub.publish().unwrap(),
            "240p".into(),
            300_000,
        )]);
        out.audio_track(Some(audio_track()));
        out.audio(&frame(TrackKind::Audio, 0, false));
        let info = out
            .apply(PoolOutput::Described {
                index: 0,
                track: track(),
            })
            .expect("described");
        assert_eq!(
            (info.name, info.width, info.bitrate),
            (RenditionId::Height(240), 426, 300_000)
        );
        for dts in [10, 30, 50] {
            out.audio(&frame(TrackKind::Audio, dts, false));
        }
        out.apply(PoolOutput::Video {
            index: 0,
            frame: frame(TrackKind::Video, 33, true),
        });
        let Some(HubEvent::Start { info, .. }) = sub.recv().await else {
            panic!("description first")
        };
        assert!(info.video.is_some() && info.audio.is_some());
        let mut order = Vec::new();
        while let Ok(HubEvent::Frame(f)) = sub.try_recv() {
            order.push((f.kind, f.dts));
        }
        assert_eq!(
            order,
            vec![
                (TrackKind::Audio, 10),
                (TrackKind::Audio, 30),
                (TrackKind::Video, 33)
            ],
            "audio before the rendition was described is dropped; later audio waits for video"
        );
        for i in 0..(MAX_HELD_AUDIO as u64 + 10) {
            out.audio(&frame(TrackKind::Audio, 100 + i, false));
        }
        let mut released = 0;
        while let Ok(HubEvent::Frame(_)) = sub.try_recv() {
            released += 1;
        }
        assert_eq!(released, 11, "50 and the 10 oldest beyond the bound");
    }

    #[tokio::test]
    async fn ending_the_outputs_stops_the_rendition_hubs() {
        let hubs = Hubs::default();
        let hub = hubs.get_or_create(&HubKey::from_player_name("live", "s_240p"));
        let shared = Shared::new(Outputs::new(vec![RenditionOutput::new(
            hub.publish().unwrap(),
            "240p".into(),
            300_000,
        )]));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run(
            shared.clone(),
            rx,
            CancellationToken::new(),
            Shutdown::new(),
        ));
        tx.send(PoolOutput::Described {
            index: 0,
            track: track(),
        })
        .await
        .unwrap();
        while !shared.take_changed() {
            tokio::task::yield_now().await;
        }
        assert_eq!(shared.renditions().len(), 1);
        assert!(hub.is_live());
        shared.end();
        assert!(!hub.is_live(), "publishers dropped at once");
        tx.send(PoolOutput::Video {
            index: 0,
            frame: frame(TrackKind::Video, 0, true),
        })
        .await
        .unwrap();
        task.await.unwrap();
    }
}
