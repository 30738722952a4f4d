/** Builders for the objects tests put into the fake API server, shaped like what a real cluster returns. */
import type { K8sObject } from './server.js';

export interface NodeFixture {
  name: string;
  ready?: boolean;
  unschedulable?: boolean;
  annotations?: Record<string, string>;
  /** `status.allocatable`, e.g. `{ cpu: '4', memory: '16Gi' }`. */
  allocatable?: { cpu: string; memory: string; pods?: string };
}

export function makeNode(f: NodeFixture): K8sObject {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: f.name, labels: { 'kubernetes.io/hostname': f.name }, ...(f.annotations ? { annotations: f.annotations } : {}) },
    spec: f.unschedulable ? { unschedulable: true } : {},
    status: {
      allocatable: { cpu: '4', memory: '16Gi', pods: '110', ...f.allocatable },
      capacity: { cpu: '4', memory: '16Gi', pods: '110', ...f.allocatable },
      conditions: [
        {
          type: 'Ready',
          status: f.ready === false ? 'Unknown' : 'True',
          reason: f.ready === false ? 'NodeStatusUnknown' : 'KubeletReady',
          message: f.ready === false ? 'Kubelet stopped posting node status.' : 'kubelet is posting ready status',
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        },
      ],
    },
  };
}

export type PodKind = 'ReplicaSet' | 'StatefulSet' | 'DaemonSet' | 'Job' | 'mirror' | 'unmanaged';

export interface PodFixture {
  name: string;
  namespace?: string;
  node: string;
  kind?: PodKind;
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  emptyDir?: boolean;
  labels?: Record<string, string>;
  /** Per container requests. */
  requests?: { cpu?: string; memory?: string };
  terminationGracePeriodSeconds?: number;
}

export function makePod(f: PodFixture): K8sObject {
  const kind = f.kind ?? 'ReplicaSet';
  const metadata: K8sObject = { name: f.name, namespace: f.namespace ?? 'default', labels: { ...f.labels } };
  if (kind === 'mirror') {
    // A static pod's mirror: the kubelet marks it with this annotation (kubernetes.io/config.mirror).
    metadata.annotations = { 'kubernetes.io/config.mirror': 'b3f1c0de', 'kubernetes.io/config.source': 'file' };
    metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'Node', name: f.node, uid: 'node-uid', controller: true }];
  } else if (kind !== 'unmanaged') {
    const apiVersion = kind === 'Job' ? 'batch/v1' : 'apps/v1';
    metadata.ownerReferences = [{ apiVersion, kind, name: `${f.name.replace(/-[^-]+$/, '')}-owner`, uid: `${kind}-uid`, controller: true, blockOwnerDeletion: true }];
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata,
    spec: {
      nodeName: f.node,
      terminationGracePeriodSeconds: f.terminationGracePeriodSeconds ?? 0,
      containers: [{ name: 'main', image: 'registry.k8s.io/pause:3.9', resources: f.requests ? { requests: f.requests } : {} }],
      volumes: f.emptyDir ? [{ name: 'scratch', emptyDir: {} }] : [{ name: 'kube-api-access', projected: { sources: [] } }],
    },
    status: { phase: f.phase ?? 'Running' },
  };
}
