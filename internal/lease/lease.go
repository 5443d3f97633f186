// Package lease shares the units of work (log shards) between the appliers
// of one destination, using the destination gateway's own log locks
// (POST /admin/log?type=metadata&lock) as leases: the destination Ceph
// cluster is the coordinator, nothing home-made.
//
// Each applier holds one membership slot lock, counts the live slots by
// probing them, and takes the units whose owner among the live slots is
// its own (rendezvous hashing, Owner): when a member joins or leaves, only
// the units that change owner move, each once. A unit it holds but no
// longer wants is released so its new owner can take it. A
// lease is valid locally until the time its last lock request was *sent*
// plus its length minus a safety margin: Valid (the fence checked before
// every apply and ack) turns false on that clock even if this process was
// frozen and never heard that it lost the lease.
package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
	"github.com/rgwsync/rgwsync/internal/rgwlog"
)

// Locker is the gateway's log-lock API.
type Locker interface {
	LockMDLogShard(ctx context.Context, period string, shard int, length time.Duration, zoneID, lockerID string) error
	UnlockMDLogShard(ctx context.Context, period string, shard int, zoneID, lockerID string) error
}

// Config of a Manager.
type Config struct {
	Locker Locker
	Period string // mdlog period whose lock objects are used ("" = current)
	ZoneID string // the lock's tag: the destination zone
	Holder string // the lock's cookie: this applier
	Base   int    // added to every lock id
	Length time.Duration
	Renew  time.Duration
	// Membership slots probed (the most appliers per destination).
	MaxMembers int
	Units      []rgwlog.Unit
	Logger     *slog.Logger
	// OnChange, if set, is called (from the manager's goroutine) whenever a
	// unit is acquired or lost.
	OnChange func(Event)
}

// Why a lease is lost (Event.Reason).
const (
	ReasonRebalanced = "rebalanced"                // another member owns it now
	ReasonRevoked    = "revoked by the exporter"   // Release was called
	ReasonTaken      = "locked by another applier" // its lock is someone else's
	ReasonExpired    = "expired before renewal"    // not renewed before its local deadline
	ReasonShutdown   = "shutting down"             // released by Run's end: no move
)

// Event reports a unit acquired (Held) or lost.
type Event struct {
	Unit    rgwlog.Unit
	Held    bool
	Expires time.Time
	Reason  string
}

// Manager keeps this applier's leases.
type Manager struct {
	cfg    Config
	margin time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	held    map[rgwlog.Unit]time.Time // unit -> local validity deadline
	slot    int                       // -1: none
	slotEnd time.Time
	members int
	rank    int
	drop    map[rgwlog.Unit]bool // asked to release (revoked)
	// lockedBefore: membership slots found locked by the previous probe
	// (the manager's goroutine only).
	lockedBefore map[int]bool
}

// New returns a manager; Run does the work.
func New(cfg Config) (*Manager, error) {
	if cfg.Locker == nil || cfg.Holder == "" || cfg.ZoneID == "" {
		return nil, errors.New("lease: Locker, Holder and ZoneID are required")
	}
	if cfg.Holder == ProbeLocker {
		return nil, fmt.Errorf("lease: holder id %q is reserved for membership probes", ProbeLocker)
	}
	if cfg.Length <= 0 {
		cfg.Length = 30 * time.Second
	}
	if cfg.Length < 3*time.Second {
		return nil, fmt.Errorf("lease length %s is too short (at least 3s)", cfg.Length)
	}
	if cfg.Renew <= 0 {
		cfg.Renew = cfg.Length / 3
	}
	if cfg.Renew >= cfg.Length/2 {
		return nil, fmt.Errorf("lease renew interval %s must be under half the length %s", cfg.Renew, cfg.Length)
	}
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{
		cfg:    cfg,
		margin: max(cfg.Length/10, time.Second),
		log:    cfg.Logger,
		held:   map[rgwlog.Unit]time.Time{},
		slot:   -1,
		drop:   map[rgwlog.Unit]bool{},

		lockedBefore: map[int]bool{},
	}, nil
}

// Valid reports whether u's lease is held and not past its local deadline.
func (m *Manager) Valid(u rgwlog.Unit) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.held[u]
	return ok && time.Now().Before(d)
}

// Deadline is u's local validity deadline; ok is false when u is not held
// or the deadline has passed.
func (m *Manager) Deadline(u rgwlog.Unit) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.held[u]
	return d, ok && time.Now().Before(d)
}

// Held lists the units held, with their local deadlines.
func (m *Manager) Held() map[rgwlog.Unit]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[rgwlog.Unit]time.Time, len(m.held))
	for u, d := range m.held {
		if time.Now().Before(d) {
			out[u] = d
		}
	}
	return out
}

// Members reports the live appliers counted at the last tick and this
// applier's rank among them.
func (m *Manager) Members() (members, rank, slot int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members, m.rank, m.slot
}

// Release asks the manager to give u up at its next tick (for example when
// the exporter revoked it because another applier subscribed).
func (m *Manager) Release(u rgwlog.Unit) {
	m.mu.Lock()
	m.drop[u] = true
	m.mu.Unlock()
}

// Run keeps the leases until ctx ends, then releases them all.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Renew)
	defer t.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			m.releaseAll()
			return nil
		case <-t.C:
		}
	}
}

func (m *Manager) lockID(u rgwlog.Unit) int { return u.LockID(m.cfg.Base) }

// Exclusive takes a lock of the destination's gateway that is no shard's
// lease, for work one applier of the destination at a time may do (name,
// hashed into rgwlog.LockExclusive's ids: two names may share one),
// held for the lease length at most; release gives it back.
// rgwadmin.ErrLocked when another applier holds it.
func (m *Manager) Exclusive(ctx context.Context, name string) (release func(), err error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	id := m.cfg.Base + rgwlog.LockExclusive + int(h.Sum32()%rgwlog.LockExclusiveIDs)
	if _, err := m.lock(ctx, id); err != nil {
		return nil, err
	}
	return func() { _ = m.unlock(id) }, nil
}

func (m *Manager) slotID(i int) int { return m.cfg.Base + rgwlog.LockMemberSlot + i }

func (m *Manager) lock(ctx context.Context, id int) (deadline time.Time, err error) {
	return m.lockAs(ctx, id, m.cfg.Holder)
}

func (m *Manager) lockAs(ctx context.Context, id int, locker string) (deadline time.Time, err error) {
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, m.margin)
	defer cancel()
	err = m.cfg.Locker.LockMDLogShard(rctx, m.cfg.Period, id, m.cfg.Length, m.cfg.ZoneID, locker)
	return sent.Add(m.cfg.Length - m.margin), err
}

func (m *Manager) unlock(id int) error {
	return m.unlockCtx(context.Background(), id)
}

func (m *Manager) unlockCtx(ctx context.Context, id int) error {
	return m.unlockAs(ctx, id, m.cfg.Holder)
}

func (m *Manager) unlockAs(ctx context.Context, id int, locker string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := m.cfg.Locker.UnlockMDLogShard(ctx, m.cfg.Period, id, m.cfg.ZoneID, locker)
	if errors.Is(err, rgwadmin.ErrNotFound) {
		return nil // not ours any more: nothing to release
	}
	return err
}

func (m *Manager) tick(ctx context.Context) {
	m.expire()
	if !m.keepSlot(ctx) {
		return
	}
	live, rank := m.countMembers(ctx)
	members := len(live)
	m.mu.Lock()
	m.members, m.rank = members, rank
	mine := m.slot
	drop := m.drop
	m.drop = map[rgwlog.Unit]bool{}
	m.mu.Unlock()

	var renew []rgwlog.Unit
	for _, u := range m.cfg.Units {
		want := Owner(u, live) == mine && !drop[u]
		m.mu.Lock()
		_, have := m.held[u]
		m.mu.Unlock()
		switch {
		case have && !want:
			reason := ReasonRebalanced
			if drop[u] {
				reason = ReasonRevoked
			}
			m.lost(u, reason)
			if err := m.unlock(m.lockID(u)); err != nil {
				m.log.Warn("release lease", "shard", u.String(), "err", err)
			}
		case want:
			renew = append(renew, u)
		}
	}
	// Renewed side by side, the nearest deadline first: one after the
	// other, ~190 locks at 30 ms each under load took longer than the
	// lease, and every lease expired before its renewal (CI).
	m.mu.Lock()
	sort.SliceStable(renew, func(i, j int) bool {
		di, hi := m.held[renew[i]]
		dj, hj := m.held[renew[j]]
		if hi != hj {
			return hi // held ones (renewals) before new ones
		}
		return di.Before(dj)
	})
	m.mu.Unlock()
	work := make(chan rgwlog.Unit)
	var wg sync.WaitGroup
	for range min(renewConcurrency, len(renew)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				m.renew(ctx, u, members, rank)
			}
		}()
	}
	for _, u := range renew {
		if ctx.Err() != nil {
			break
		}
		work <- u
	}
	close(work)
	wg.Wait()
}

// renewConcurrency bounds the lock requests of one tick in flight.
const renewConcurrency = 16

// renew renews (or takes) u's lease.
func (m *Manager) renew(ctx context.Context, u rgwlog.Unit, members, rank int) {
	m.mu.Lock()
	_, have := m.held[u]
	m.mu.Unlock()
	// A lease whose local deadline passed while this tick was busy
	// renewing others is lost, even if the lock below succeeds: Valid has
	// said false, so the applier may have dropped the shard, and must hear
	// "lost" then "acquired" to pick it up again.
	if have && m.pastDeadline(u) {
		m.lost(u, ReasonExpired)
		have = false
	}
	deadline, err := m.lock(ctx, m.lockID(u))
	switch {
	case err == nil:
		m.mu.Lock()
		m.held[u] = deadline
		m.mu.Unlock()
		if !have {
			m.log.Info("lease acquired", "shard", u.String(), "members", members, "rank", rank)
			m.notify(Event{Unit: u, Held: true, Expires: deadline})
		}
	case errors.Is(err, rgwadmin.ErrLocked):
		if have {
			m.lost(u, ReasonTaken)
		}
	default:
		// Keep it until its deadline: the gateway may just be slow.
		if ctx.Err() == nil {
			m.log.Warn("lease renew/acquire failed", "shard", u.String(), "err", err)
		}
	}
}

// Owner is the live membership slot that should hold u: the one with the
// highest hash of (unit, slot) — rendezvous hashing. Every member computes
// the same owner from the same live set, and a change of the set moves
// only the units of the slots that came or went.
func Owner(u rgwlog.Unit, live []int) int {
	best, bestH := -1, uint64(0)
	for _, s := range live {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%d/%d", u.Log, u.Shard, s)
		// FNV's low bits mix poorly for short inputs: finish with a
		// multiply-xorshift so shares come out even.
		x := h.Sum64()
		x ^= x >> 33
		x *= 0xff51afd7ed558ccd
		x ^= x >> 33
		if best < 0 || x > bestH {
			best, bestH = s, x
		}
	}
	return best
}

func (m *Manager) pastDeadline(u rgwlog.Unit) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.held[u]
	return ok && !time.Now().Before(d)
}

// expire drops leases past their local deadline.
func (m *Manager) expire() {
	now := time.Now()
	m.mu.Lock()
	var gone []rgwlog.Unit
	for u, d := range m.held {
		if !now.Before(d) {
			gone = append(gone, u)
		}
	}
	if m.slot >= 0 && !now.Before(m.slotEnd) {
		m.slot = -1
	}
	m.mu.Unlock()
	for _, u := range gone {
		m.lost(u, ReasonExpired)
	}
}

func (m *Manager) lost(u rgwlog.Unit, reason string) {
	m.mu.Lock()
	_, had := m.held[u]
	delete(m.held, u)
	m.mu.Unlock()
	if had {
		m.log.Info("lease lost", "shard", u.String(), "reason", reason)
		m.notify(Event{Unit: u, Held: false, Reason: reason})
	}
}

func (m *Manager) notify(ev Event) {
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(ev)
	}
}

// keepSlot renews this applier's membership slot, or takes the lowest free.
func (m *Manager) keepSlot(ctx context.Context) bool {
	m.mu.Lock()
	slot := m.slot
	m.mu.Unlock()
	if slot >= 0 {
		d, err := m.lock(ctx, m.slotID(slot))
		if err == nil {
			m.mu.Lock()
			m.slotEnd = d
			m.mu.Unlock()
			return true
		}
		if !errors.Is(err, rgwadmin.ErrLocked) {
			m.log.Warn("renew membership slot", "slot", slot, "err", err)
			return time.Now().Before(m.slotEnd)
		}
		m.log.Warn("membership slot taken by another applier; looking for a new one", "slot", slot)
	}
	for i := range m.cfg.MaxMembers {
		d, err := m.lock(ctx, m.slotID(i))
		if err == nil {
			m.mu.Lock()
			m.slot, m.slotEnd = i, d
			m.mu.Unlock()
			m.log.Info("membership slot taken", "slot", i)
			return true
		}
		if !errors.Is(err, rgwadmin.ErrLocked) {
			if ctx.Err() == nil {
				m.log.Warn("take membership slot", "slot", i, "err", err)
			}
			return false
		}
	}
	m.log.Error("no free membership slot: too many appliers for this destination", "max", m.cfg.MaxMembers)
	return false
}

// ProbeLocker is the locker id of membership probes, the same for every
// applier: the gateway lets a locker lock again what it holds, so two
// appliers probing the same free slot at once both succeed, and neither
// counts the other's probe as a member (measured: lock by "rgwsync:probe"
// twice → 200, 200; by "a1" then → 423).
const ProbeLocker = "rgwsync:probe"

// countMembers probes every other slot: a slot that locks is free (and is
// unlocked at once), one that answers Locked is a live applier. It returns
// the live slots (sorted, its own included) and its rank among them.
func (m *Manager) countMembers(ctx context.Context) (live []int, rank int) {
	m.mu.Lock()
	mine := m.slot
	m.mu.Unlock()
	live = []int{mine}
	for i := range m.cfg.MaxMembers {
		if i == mine {
			continue
		}
		_, err := m.lockAs(ctx, m.slotID(i), ProbeLocker)
		switch {
		case err == nil:
			if err := m.unlockAs(context.Background(), m.slotID(i), ProbeLocker); err != nil {
				m.log.Warn("unlock probed slot", "slot", i, "err", err)
			}
		case errors.Is(err, rgwadmin.ErrLocked):
			// Counted only when seen locked twice in a row: two appliers
			// probing the same free slot at the same moment each see it
			// locked by the other's probe. Such phantom members made the
			// shares flap under load (CI: members=6 with two appliers).
			if m.lockedBefore[i] {
				live = append(live, i)
			}
			m.lockedBefore[i] = true
			continue
		}
		delete(m.lockedBefore, i)
	}
	sort.Ints(live)
	for r, s := range live {
		if s == mine {
			rank = r
		}
	}
	return live, rank
}

// releaseAll unlocks everything held, so a restarted or surviving applier
// does not have to wait for the leases to expire.
func (m *Manager) releaseAll() {
	m.mu.Lock()
	units := make([]rgwlog.Unit, 0, len(m.held))
	for u := range m.held {
		units = append(units, u)
	}
	slot := m.slot
	m.slot = -1
	m.mu.Unlock()
	for _, u := range units {
		m.lost(u, ReasonShutdown)
	}
	// Unlocked side by side and within releaseTimeout in all: with the
	// destination slow or unreachable, one by one at 5 s each a chaos run
	// saw an applier still releasing 65 leases 30 s after SIGTERM. What is
	// not released in time expires by itself (lease.length).
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var failed atomic.Int32
	for _, u := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := m.unlockCtx(ctx, m.lockID(u)); err != nil {
				failed.Add(1)
				m.log.Debug("release lease", "shard", u.String(), "err", err)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		m.log.Warn("leases not released at shutdown: they expire by themselves", "count", n, "of", len(units))
	}
	if slot >= 0 {
		_ = m.unlockCtx(ctx, m.slotID(slot))
	}
}

// releaseTimeout bounds the release of every lease at shutdown.
const releaseTimeout = 5 * time.Second
