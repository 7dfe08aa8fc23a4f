// Package soak drives a relay with many simulated devices and checks every
// delivery promise it makes: each push acked, in order; each acked push
// delivered exactly once, in order, to every other device of its user;
// each peer_pull answered; nothing crossing from one user to another.
//
// Every event's data carries the sender's user, device, clientId, a
// per-sender sequence number and the send time, so that a receiver can
// check a delivery on its own and measure its latency. A run is split over
// worker processes by whole users (a process holds at most about 19,000
// sockets), so that all checks stay inside one process; the parent merges
// the workers' counters and HDR histograms.
package soak
