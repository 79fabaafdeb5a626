// The built-in waypoint `app/waypoint` beside a loopback mesh, its log lines collected.
import { pino } from 'pino';
import { waypointConfigFromFlags } from '../../src/config/waypoint-config.js';
import { WaypointApp, type WaypointDeps } from '../../src/waypoint/waypoint-app.js';
import type { Mesh } from './loopback.js';

export function startLoopbackWaypoint(mesh: Mesh, ip: string, logs: Record<string, unknown>[], deps?: WaypointDeps): Promise<WaypointApp> {
  return WaypointApp.start(
    waypointConfigFromFlags({
      name: 'waypoint',
      namespace: 'app',
      manifests: mesh.manifestFile,
      caDir: `${mesh.dir}/ca`,
      listen: `${ip}:15008`,
      admin: '127.0.0.1:0',
      metrics: '127.0.0.1:0',
      readiness: '127.0.0.1:0',
      drainSeconds: 1,
    }),
    pino({ level: 'info' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) }),
    deps,
  );
}

/** The Gateway app/waypoint (class istio-waypoint) and its one pod on node-2 at ip. */
export function waypointManifests(ip: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: app }
spec: { gatewayClassName: istio-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: v1
kind: Pod
metadata: { name: waypoint-0, namespace: app, labels: { gateway.networking.k8s.io/gateway-name: waypoint } }
spec: { nodeName: node-2, serviceAccountName: waypoint }
status: { podIP: ${ip} }
`;
}
