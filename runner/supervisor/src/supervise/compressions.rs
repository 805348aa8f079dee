//! The queue of log compressions, a pure decision (the loop starts and reaps the children):
//! at most one compression per task, so a task's rotations are compressed in order, and at
//! most [`Compressions::cap`] at once, so a task that floods its log (thousands of rotations
//! a second) costs a bounded number of children; the rest wait, oldest first. A task whose
//! rotations pile up beyond `logs.keep` waits only for the newest `keep`: the older ones are
//! pruned before a compression is spent on them. Tasks take turns for a free place.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use nix::unistd::Pid;

/// Log compressions: running, and waiting for a place.
#[derive(Debug)]
pub struct Compressions {
    /// At most this many run at once.
    cap: usize,
    /// Running: their task.
    running: HashMap<Pid, usize>,
    /// For each task with a compression running (or being started): its file.
    busy: HashMap<usize, PathBuf>,
    /// For each task: its rotated files waiting, oldest first.
    waiting: HashMap<usize, VecDeque<PathBuf>>,
    /// The tasks with files waiting and no compression running, in the order they get a
    /// place: exactly those (each once).
    turn: VecDeque<usize>,
    /// No compression starts any more (the shutdown's last step).
    closed: bool,
}

impl Compressions {
    /// At most `cap` compressions at once (at least 1).
    pub fn new(cap: usize) -> Compressions {
        Compressions {
            cap: cap.max(1),
            running: HashMap::new(),
            busy: HashMap::new(),
            waiting: HashMap::new(),
            turn: VecDeque::new(),
            closed: false,
        }
    }

    /// As many at once as this process may use CPUs: compressing is CPU work.
    pub fn for_this_machine() -> Compressions {
        Compressions::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Task `task` rotated `files` (oldest first): they wait for their compression. Of its
    /// waiting files only the newest `keep` are kept (pruning removes the older ones).
    pub fn queue(&mut self, task: usize, files: impl IntoIterator<Item = PathBuf>, keep: usize) {
        if self.closed {
            return;
        }
        // In its turn already if files of it waited and none of its runs.
        let had = self.waiting.contains_key(&task);
        let waiting = self.waiting.entry(task).or_default();
        waiting.extend(files);
        while waiting.len() > keep {
            waiting.pop_front();
        }
        if waiting.is_empty() {
            // keep: 0 (nothing waits), or nothing rotated.
            self.waiting.remove(&task);
        } else if !had && !self.busy.contains_key(&task) {
            self.turn.push_back(task);
        }
    }

    /// The next compression to start, if a place is free and a file waits: its task and
    /// file. The caller starts it and says so ([`Compressions::started`]) or says it did not
    /// ([`Compressions::ended`] with the task).
    pub fn next(&mut self) -> Option<(usize, PathBuf)> {
        if self.closed || self.busy.len() >= self.cap {
            return None;
        }
        while let Some(task) = self.turn.pop_front() {
            let Some(waiting) = self.waiting.get_mut(&task) else {
                continue;
            };
            let Some(file) = waiting.pop_front() else {
                continue;
            };
            if waiting.is_empty() {
                self.waiting.remove(&task);
            }
            self.busy.insert(task, file.clone());
            return Some((task, file));
        }
        None
    }

    /// The compression [`Compressions::next`] gave for `task` runs as `pid`.
    pub fn started(&mut self, pid: Pid, task: usize) {
        self.running.insert(pid, task);
    }

    /// `pid` exited: if it was a compression, its task and file.
    pub fn exited(&mut self, pid: Pid) -> Option<(usize, PathBuf)> {
        let task = self.running.remove(&pid)?;
        let file = self.ended(task)?;
        Some((task, file))
    }

    /// Task `task`'s compression is over (or never started): its next file, if any, waits
    /// for a place, after the other tasks'. Returns the file it had.
    pub fn ended(&mut self, task: usize) -> Option<PathBuf> {
        let file = self.busy.remove(&task)?;
        if self.waiting.contains_key(&task) {
            self.turn.push_back(task);
        }
        Some(file)
    }

    /// Whether anything of task `task`'s runs or waits.
    pub fn involves(&self, task: usize) -> bool {
        self.busy.contains_key(&task) || self.waiting.contains_key(&task)
    }

    /// Whether `pid` is a running compression.
    pub fn is_running(&self, pid: Pid) -> bool {
        self.running.contains_key(&pid)
    }

    /// The running compressions.
    pub fn pids(&self) -> Vec<Pid> {
        self.running.keys().copied().collect()
    }

    /// How many files wait.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    /// No compression starts from now: the files waiting stay as they are (plain rotated
    /// logs); returns how many. The running ones are still reported by
    /// [`Compressions::exited`].
    pub fn close(&mut self) -> usize {
        let left = self.waiting();
        self.closed = true;
        self.waiting.clear();
        self.turn.clear();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(task: &str, range: std::ops::Range<u32>) -> Vec<PathBuf> {
        range
            .map(|n| PathBuf::from(format!("{task}.{n}")))
            .collect()
    }

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    /// Starts every compression there is room for, each as a new pid; returns them.
    fn start_all(c: &mut Compressions, next_pid: &mut i32) -> Vec<(Pid, usize, PathBuf)> {
        let mut started = Vec::new();
        while let Some((task, file)) = c.next() {
            *next_pid += 1;
            c.started(pid(*next_pid), task);
            started.push((pid(*next_pid), task, file));
        }
        started
    }

    #[test]
    fn one_compression_per_task_in_order_and_no_more_than_the_cap() {
        let mut c = Compressions::new(2);
        let mut n = 0;
        c.queue(0, files("a", 0..3), 5);
        c.queue(1, files("b", 0..3), 5);
        c.queue(2, files("c", 0..3), 5);
        let first = start_all(&mut c, &mut n);
        assert_eq!(
            first,
            [
                (pid(1), 0, PathBuf::from("a.0")),
                (pid(2), 1, PathBuf::from("b.0"))
            ]
        );
        assert!(c.involves(0) && c.involves(2));
        // a's ends: c, which waited longest, goes next; a's next file waits behind it.
        assert_eq!(c.exited(pid(1)), Some((0, PathBuf::from("a.0"))));
        assert_eq!(
            start_all(&mut c, &mut n),
            [(pid(3), 2, PathBuf::from("c.0"))]
        );
        assert_eq!(c.exited(pid(2)), Some((1, PathBuf::from("b.0"))));
        assert_eq!(
            start_all(&mut c, &mut n),
            [(pid(4), 0, PathBuf::from("a.1"))]
        );
        // Not a compression.
        assert_eq!(c.exited(pid(99)), None);
        let mut order = Vec::new();
        while !c.pids().is_empty() {
            for p in c.pids() {
                order.push(c.exited(p).unwrap());
            }
            start_all(&mut c, &mut n);
            assert!(c.pids().len() <= 2);
        }
        let of = |t: usize| -> Vec<String> {
            order
                .iter()
                .filter(|(task, _)| *task == t)
                .map(|(_, f)| f.display().to_string())
                .collect()
        };
        assert_eq!(of(0), ["a.1", "a.2"]);
        assert_eq!(of(1), ["b.1", "b.2"]);
        assert_eq!(of(2), ["c.0", "c.1", "c.2"]);
        assert_eq!(c.waiting(), 0);
        assert!(!c.involves(0) && !c.involves(1) && !c.involves(2));
    }

    /// A flood rotates far faster than compressions end: only the newest `keep` files wait
    /// (pruning removes the others), never a pile.
    #[test]
    fn rotations_beyond_keep_never_wait() {
        let mut c = Compressions::new(1);
        let mut n = 0;
        c.queue(0, files("a", 0..1000), 5);
        assert_eq!(start_all(&mut c, &mut n).len(), 1);
        for round in 0..100 {
            c.queue(0, files("a", 1000 + round * 64..1000 + round * 64 + 64), 5);
            assert_eq!(c.waiting(), 5);
            assert!(start_all(&mut c, &mut n).is_empty(), "one per task");
        }
        let p = c.pids()[0];
        assert_eq!(c.exited(p), Some((0, PathBuf::from("a.995"))));
        // The oldest of the newest five.
        assert_eq!(start_all(&mut c, &mut n)[0].2, PathBuf::from("a.7395"));
        // keep: 0 keeps nothing to compress.
        c.queue(1, files("b", 0..3), 0);
        assert!(!c.involves(1));
    }

    #[test]
    fn a_compression_that_did_not_start_lets_the_next_file_go() {
        let mut c = Compressions::new(1);
        c.queue(0, files("a", 0..2), 5);
        let (task, file) = c.next().unwrap();
        assert_eq!((task, file.as_path()), (0, std::path::Path::new("a.0")));
        assert_eq!(c.ended(0), Some(file));
        assert_eq!(c.next(), Some((0, PathBuf::from("a.1"))));
    }

    #[test]
    fn closed_nothing_starts_and_the_running_are_still_known() {
        let mut c = Compressions::new(4);
        let mut n = 0;
        c.queue(0, files("a", 0..3), 5);
        start_all(&mut c, &mut n);
        assert_eq!(c.close(), 2);
        c.queue(1, files("b", 0..3), 5);
        assert_eq!(c.next(), None);
        assert_eq!(c.waiting(), 0);
        assert!(c.is_running(pid(1)));
        assert_eq!(c.exited(pid(1)), Some((0, PathBuf::from("a.0"))));
        assert_eq!(c.next(), None);
    }
}
